"""Preprocess raw talking-face videos into the auto_avsr layout (96x96 mouth crops, 16 kHz wav, label CSV).

    python scripts/prepare_data.py IN_DIR OUT_DIR --dataset mydata [--audio-dir DIR] [--workers N]

Resumable: rerun the same command and finished clips are skipped. See docs/prepare_data.md.
"""

import argparse
import os
import sys

from avsr_sinks.data.preprocessing.driver import prepare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("in_dir", help="folder of raw videos (searched recursively); never modified")
    parser.add_argument("out_dir", help="output root (must not be inside in_dir)")
    parser.add_argument("--dataset", required=True, help="dataset name: outputs go to OUT_DIR/<dataset>/")
    parser.add_argument("--audio-dir", default=None, help="separate audio (<rel_path>.wav/.flac) instead of the video's track")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all CPUs)")
    parser.add_argument("--smooth-window", type=int, default=5, help="landmark moving-average window in frames")
    args = parser.parse_args()
    try:
        report = prepare(args.in_dir, args.out_dir, args.dataset, args.audio_dir, args.workers, args.smooth_window)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
