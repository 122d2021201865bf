"""Scan a corpus manifest for missing, unreadable, empty, too long and mismatched samples.

    python scripts/validate_data.py ROOT LABEL_CSV [--modalities audio video] [--max-frames N] [--workers N]

Exits with status 1 when any sample is bad, so it can gate a training job.
"""

import argparse
import sys

from avsr_sinks.data.validation import validate_manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="corpus root holding <dataset>/<rel_path>.mp4/.wav")
    parser.add_argument("label_csv", help="label CSV (4-field auto_avsr or 5-field Llama-AVSR)")
    parser.add_argument("--modalities", nargs="+", default=["audio", "video"], choices=["audio", "video"])
    parser.add_argument("--max-frames", type=int, default=None, help="report samples longer than this")
    parser.add_argument("--max-av-mismatch-frames", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = parser.parse_args()
    report = validate_manifest(args.root, args.label_csv, args.modalities, args.max_frames,
                               args.max_av_mismatch_frames, args.workers)
    print(report.summary())
    return 1 if report.n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
