"""How well Whisper itself (its own decoder, no fine-tuning) transcribes the espeak corpus.

    python results/laptop/whisper_zero_shot.py [--n 100] [--models whisper-tiny.en whisper-base]

The laptop recipe keeps Whisper's encoder frozen, so what its features say about espeak-ng's
synthetic voices bounds what the projector and LoRA can read from them. Greedy decoding of the
first N utterances of the test split (held-out accents and voices) and of the training split,
with the converted weights of scripts/install_weights.py (--whisper-base for base). Prints one
table row per model and split and writes results/laptop/whisper_zero_shot.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jiwer
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from avsr_sinks.data.espeak_corpus import EspeakCorpusConfig, ensure_espeak_corpus  # noqa: E402
from avsr_sinks.data.manifest import read_label_csv  # noqa: E402
from avsr_sinks.evaluation.wer import normalize_text  # noqa: E402


def transcribe(folder: Path, rows, root: Path) -> list[str]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    # The multilingual checkpoints would guess the language of robotic speech; tell them.
    language = {} if model.config.vocab_size == 51864 else {"language": "en", "task": "transcribe"}
    hypotheses = []
    for row in rows:
        audio, rate = sf.read(row.media_path(root, ".wav"), dtype="float32")
        features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
        with torch.no_grad():
            out = model.generate(features, max_new_tokens=64, num_beams=1, do_sample=False, **language)
        hypotheses.append(processor.batch_decode(out, skip_special_tokens=True)[0])
    return hypotheses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="utterances per split")
    parser.add_argument("--models", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    args = parser.parse_args(argv)
    cache = Path(os.environ.get("AVSR_SINKS_CACHE") or "~/.cache/avsr_sinks").expanduser()
    corpus = ensure_espeak_corpus(cache / "espeak", EspeakCorpusConfig())
    results = []
    print("| model | split | utterances | WER % | s/utterance |\n|---|---|---|---|---|")
    for name in args.models:
        folder = cache / "weights" / name
        if not folder.is_dir():
            print(f"{folder} missing: python scripts/install_weights.py --whisper-base", file=sys.stderr)
            return 2
        for split, label_csv in (("test", corpus.test_csv), ("train", corpus.train_csv)):
            rows = read_label_csv(label_csv, root=corpus.root)[: args.n]
            started = time.perf_counter()
            hyps = transcribe(folder, rows, corpus.root)
            seconds = (time.perf_counter() - started) / len(rows)
            refs = [normalize_text(r.transcript) for r in rows]
            wer = jiwer.wer(refs, [normalize_text(h) or "<empty>" for h in hyps])
            results.append({"model": name, "split": split, "utterances": len(rows), "wer": wer,
                            "examples": [{"reference": r, "hypothesis": h} for r, h in list(zip(refs, hyps))[:5]]})
            print(f"| {name} | {split} | {len(rows)} | {100 * wer:.1f} | {seconds:.2f} |", flush=True)
    (Path(__file__).parent / "whisper_zero_shot.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
