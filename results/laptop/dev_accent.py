"""Which training accent to hold out as a dev accent, chosen without reading the test accents.

    python results/laptop/dev_accent.py [--sentences 100]

The held-out test accents are what limits the laptop recipe (REPORT sections 9-10), and an
augmentation chosen by its test WER is no longer tested blind. A dev accent stands in for them:
one of the six training accents, left out of training and speaking the validation split
(``data.espeak.val_voices``). This picks the one whose pronunciation is farthest from the other
five: espeak-ng's phoneme strings (``espeak-ng -x``, stress marks removed) of the first validation
sentences in every training accent, the phoneme error rate (jiwer, phonemes as words) between each
pair averaged over both directions, and per accent the mean over the other five. Writes
``dev_accent.json`` beside this script.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import jiwer

from avsr_sinks.data.espeak_corpus import TRAIN_ACCENTS, EspeakCorpusConfig, corpus_sentences, phonemize


def phoneme_string(text: str, accent: str) -> str:
    return " ".join(phoneme.lstrip("',") for word in phonemize(text, accent) for phoneme in word)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=100)
    args = parser.parse_args()
    sentences = corpus_sentences(EspeakCorpusConfig())["val"][:args.sentences]
    spoken = {accent: [phoneme_string(text, accent) for text in sentences] for accent in TRAIN_ACCENTS}
    distance = {}
    for a, b in itertools.combinations(TRAIN_ACCENTS, 2):
        distance[a, b] = distance[b, a] = (jiwer.wer(spoken[a], spoken[b]) + jiwer.wer(spoken[b], spoken[a])) / 2
    farness = {a: sum(distance[a, b] for b in TRAIN_ACCENTS if b != a) / (len(TRAIN_ACCENTS) - 1) for a in TRAIN_ACCENTS}
    dev = max(farness, key=farness.get)
    result = {"sentences": len(sentences), "mean_phoneme_error_rate_to_the_others": farness, "dev_accent": dev,
              "pairwise": {f"{a} / {b}": distance[a, b] for a, b in itertools.combinations(TRAIN_ACCENTS, 2)}}
    out = Path(__file__).resolve().parent / "dev_accent.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for accent, value in sorted(farness.items(), key=lambda item: -item[1]):
        print(f"{accent:16s} {100 * value:5.1f} % phonemes differ from the other training accents")
    print(f"dev accent: {dev}; wrote {out}")


if __name__ == "__main__":
    main()
