"""Preprocess raw talking-face videos into the auto_avsr layout (96x96 mouth crops, 16 kHz wav, label CSV).

    python scripts/prepare_data.py IN_DIR OUT_DIR --dataset mydata [--audio-dir DIR] [--workers N]

Resumable: rerun the same command and finished clips are skipped. See docs/prepare_data.md.
A mistake in the arguments is one line `config error: ...` and exit status 2, before any video is read.
"""

import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import exit_on_config_error  # noqa: E402
from avsr_sinks.training.config_validation import ConfigError  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one ``config error:`` line (its usage text goes with --help)."""

    def error(self, message: str):
        bad_value = re.fullmatch(r"argument (\S+): invalid (\w+) value: '(.*)'", message)
        if bad_value:
            name, kind, value = bad_value.groups()
            exit_on_config_error(ConfigError(name.split("/")[-1], value, f"is not a valid {kind}", "see --help"))
        missing = re.fullmatch(r"the following arguments are required: (.*)", message)
        if missing:
            names = missing.group(1).split(", ")
            exit_on_config_error(ConfigError(names[0], "", f"is required (missing: {', '.join(names)})", "see --help"))
        exit_on_config_error(ConfigError("arguments", " ".join(sys.argv[1:]), message, "see --help"))


def check_arguments(args: argparse.Namespace) -> None:
    """Everything the arguments must be, before the preprocessing imports and reads anything."""
    from avsr_sinks.data.preprocessing.driver import check_paths

    try:
        check_paths(Path(args.in_dir), Path(args.out_dir))
    except FileNotFoundError as err:
        raise ConfigError("in_dir", args.in_dir, "is not a folder", "pass the folder holding the raw videos") from err
    except ValueError as err:
        raise ConfigError("out_dir", args.out_dir, f"is inside in_dir={args.in_dir}",
                          "choose an output folder outside it, so that no input can be overwritten") from err
    if not args.dataset or "/" in args.dataset:
        raise ConfigError("--dataset", args.dataset, "must be a non-empty name without '/'", "e.g. --dataset mydata")
    if args.audio_dir is not None and not Path(args.audio_dir).is_dir():
        raise ConfigError("--audio-dir", args.audio_dir, "is not a folder", "pass the folder of <rel_path>.wav/.flac files")
    for name, value in (("--workers", args.workers), ("--smooth-window", args.smooth_window)):
        if value < 1:
            raise ConfigError(name, value, "must be an integer >= 1", f"e.g. {name} {1 if name == '--workers' else 5}")


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("in_dir", help="folder of raw videos (searched recursively); never modified")
    parser.add_argument("out_dir", help="output root (must not be inside in_dir)")
    parser.add_argument("--dataset", required=True, help="dataset name: outputs go to OUT_DIR/<dataset>/")
    parser.add_argument("--audio-dir", default=None, help="separate audio (<rel_path>.wav/.flac) instead of the video's track")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all CPUs)")
    parser.add_argument("--smooth-window", type=int, default=5, help="landmark moving-average window in frames")
    args = parser.parse_args()
    try:
        check_arguments(args)
    except ConfigError as err:
        exit_on_config_error(err)
    from avsr_sinks.data.preprocessing.driver import prepare

    try:
        report = prepare(args.in_dir, args.out_dir, args.dataset, args.audio_dir, args.workers, args.smooth_window)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
