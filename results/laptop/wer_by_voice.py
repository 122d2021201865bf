"""The espeak test WER of a collected run split by the held-out accent and voice variant.

    python results/laptop/wer_by_voice.py results/laptop/ctc_recipe/lambda0

Reads the run's per-utterance CSV (espeak_test_utterances.csv) and, for each utterance's voice,
the corpus plan of the run's config.yaml (deterministic and cheap: nothing is synthesised).
Writes wer_by_voice.json beside the CSV.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from avsr_sinks.data.espeak_corpus import EspeakCorpusConfig, plan_corpus


def main(run: Path) -> int:
    config = yaml.safe_load((run / "config.yaml").read_text())
    plans = plan_corpus(EspeakCorpusConfig(**config["data"]["espeak"]))
    voice_of = {f"espeak/test/{plan.utterance_id}": plan.voice for plan in plans if plan.split == "test"}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # errors, reference words, utterances
    for row in csv.DictReader((run / "espeak_test_utterances.csv").open()):
        accent, _, variant = voice_of[row["id"]].partition("+")
        for key in ("all", f"accent {accent}", f"variant {variant}", f"voice {accent}+{variant}"):
            totals[key][0] += int(row["errors"])
            totals[key][1] += int(row["reference_words"])
            totals[key][2] += 1
    result = {key: {"wer": errors / words, "utterances": n} for key, (errors, words, n) in sorted(totals.items())}
    (run / "wer_by_voice.json").write_text(json.dumps(result, indent=1) + "\n")
    for key, value in result.items():
        print(f"{key:28s} {100 * value['wer']:6.1f} %  ({value['utterances']} utterances)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
