"""The espeak test WER of a collected run split by the held-out accent and voice variant, and,
per accent, the words it gets wrong most often with what they became.

    python results/laptop/wer_by_voice.py results/laptop/ctc_recipe/lambda0

Reads the run's per-utterance CSV (espeak_test_utterances.csv) and, for each utterance's voice,
the corpus plan of the run's config.yaml (deterministic and cheap: nothing is synthesised).
Writes wer_by_voice.json beside the CSV. A word counts as wrong where jiwer's alignment
substitutes or deletes it.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import jiwer
import yaml

from avsr_sinks.data.espeak_corpus import EspeakCorpusConfig, plan_corpus


MOST_MISSED = 12  # words listed per accent


def missed_words(reference: str, hypothesis: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(the reference words, [(word, what it became or "" where deleted)] for the wrong ones)."""
    if not hypothesis.split():  # jiwer refuses an empty hypothesis: every word is deleted (as corpus_wer counts it)
        return reference.split(), [(word, "") for word in reference.split()]
    alignment = jiwer.process_words(reference, hypothesis)
    ref, hyp = alignment.references[0], alignment.hypotheses[0]
    wrong = []
    for chunk in alignment.alignments[0]:
        if chunk.type == "substitute":
            wrong += zip(ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx])
        elif chunk.type == "delete":
            wrong += [(word, "") for word in ref[chunk.ref_start_idx:chunk.ref_end_idx]]
    return ref, wrong


def main(run: Path) -> int:
    config = yaml.safe_load((run / "config.yaml").read_text())
    plans = plan_corpus(EspeakCorpusConfig(**config["data"]["espeak"]))
    voice_of = {f"espeak/test/{plan.utterance_id}": plan.voice for plan in plans if plan.split == "test"}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # errors, reference words, utterances
    said: dict[str, Counter] = defaultdict(Counter)
    became: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in csv.DictReader((run / "espeak_test_utterances.csv").open()):
        accent, _, variant = voice_of[row["id"]].partition("+")
        words, wrong = missed_words(row["reference"], row["hypothesis"])
        said[accent].update(words)
        for word, replacement in wrong:
            became[accent][word][replacement] += 1
        for key in ("all", f"accent {accent}", f"variant {variant}", f"voice {accent}+{variant}"):
            totals[key][0] += int(row["errors"])
            totals[key][1] += int(row["reference_words"])
            totals[key][2] += 1
    result = {key: {"wer": errors / words, "utterances": n} for key, (errors, words, n) in sorted(totals.items())}
    for key, value in result.items():
        print(f"{key:28s} {100 * value['wer']:6.1f} %  ({value['utterances']} utterances)")
    result["most_missed"] = {}
    for accent in sorted(became):
        ranked = sorted(became[accent].items(), key=lambda item: (-sum(item[1].values()), item[0]))[:MOST_MISSED]
        result["most_missed"][accent] = [
            {"word": word, "wrong": sum(replacements.values()), "said": said[accent][word],
             "became": dict(replacements.most_common(3))} for word, replacements in ranked]
        print(f"most missed, {accent}: " + ", ".join(
            f"{entry['word']} {entry['wrong']}/{entry['said']} (-> {', '.join(w or '(deleted)' for w in entry['became'])})"
            for entry in result["most_missed"][accent]))
    (run / "wer_by_voice.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
