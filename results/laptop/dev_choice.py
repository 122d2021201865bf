"""Which augmentation to train the six-accent recipe with, chosen on the dev accent alone.

    python results/laptop/dev_choice.py

Reads the per-utterance validation CSVs (`dev_val_utterances.csv`, the validation split spoken by
the dev accent en-gb-scotland, decoded by `run_all.sh dev_choice`) of dev_lambda0 (as spoken) and
of each augmented dev run that exists (dev_drop, dev_swap) under results/laptop/ctc_recipe/,
recounts each WER from the reference and hypothesis columns, and writes dev_choice.json beside
them: each run's dev WER, each augmentation's WER - WER(as spoken) with its paired-bootstrap
interval over the validation utterances, and the choice. The rule, fixed before the numbers were
read: the augmentation with the lowest dev WER whose whole interval lies below zero; none when no
interval does. The test accents are not read.
"""

from __future__ import annotations

import json
from pathlib import Path

from avsr_sinks.evaluation.significance import paired_bootstrap_wer_delta
from avsr_sinks.evaluation.wer import WERResult, recount_utterance_csv

RUNS = Path(__file__).resolve().parent / "ctc_recipe"
AS_SPOKEN = "dev_lambda0"
AUGMENTATIONS = {"dev_drop": "data.espeak.phoneme_drop=0.1", "dev_swap": "data.espeak.phoneme_swap=0.1"}


def recounted(run: str) -> WERResult | None:
    path = RUNS / run / "dev_val_utterances.csv"
    return recount_utterance_csv(path) if path.is_file() else None


def choose() -> dict:
    base = recounted(AS_SPOKEN)
    if base is None:
        raise FileNotFoundError(f"{RUNS / AS_SPOKEN / 'dev_val_utterances.csv'} is missing: run "
                                "`bash results/laptop/run_all.sh dev_lambda0 dev_choice` first")
    report: dict = {"dev_wer": {AS_SPOKEN: base.wer}, "delta_vs_as_spoken": {}, "overrides": AUGMENTATIONS}
    for run in AUGMENTATIONS:
        result = recounted(run)
        if result is None:
            continue
        delta = paired_bootstrap_wer_delta(base.utterances, result.utterances)
        report["dev_wer"][run] = result.wer
        report["delta_vs_as_spoken"][run] = {"delta": delta.delta, "low": delta.low, "high": delta.high,
                                             "confidence": delta.confidence}
    better = [run for run, d in report["delta_vs_as_spoken"].items() if d["high"] < 0]
    report["chosen"] = min(better, key=lambda run: report["dev_wer"][run]) if better else None
    return report


def main() -> None:
    report = choose()
    out = RUNS / "dev_choice.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
