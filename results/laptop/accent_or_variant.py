"""Is it the unheard accents or the unheard voice variants that the held-out test voices trip on?

    python results/laptop/accent_or_variant.py RUN_DIR [--n 150] [--beams 4]

The espeak test split is spoken by two accents (en-029, en-gb-x-gbcwmd) with four variants
(m5, m7, f3, f5), none of which training hears. This builds two more test sets of the same first
N test sentences (the test split is generated first, so its sentences do not depend on the
rest of the corpus), each unheard in one factor only:

- ``train_accents_test_variants``: the six training accents with the four test variants;
- ``test_accents_train_variants``: the two test accents with the 15 training variants;

and decodes both with the run's ``trained.ckpt`` (``scripts/eval.py data=lrs3 data.root=...
data.test_csv=...``: a corpus of label files). Writes RUN_DIR/accent_or_variant.json with each
set's WER, beside the run's own test WER on the same N sentences.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from avsr_sinks.data.espeak_corpus import (MORE_TRAIN_VOICES, TEST_ACCENTS, TEST_VARIANTS,  # noqa: E402
                                           TRAIN_ACCENTS, EspeakCorpusConfig, ensure_espeak_corpus)
from avsr_sinks.evaluation.wer import corpus_wer  # noqa: E402

# The variants experiment=laptop_asr trains on (its voices are MORE_TRAIN_VOICES), in their order.
HEARD_VARIANTS = tuple(dict.fromkeys(voice.partition("+")[2] for voice in MORE_TRAIN_VOICES))
SETS = {"train_accents_test_variants": tuple(f"{a}+{v}" for a in TRAIN_ACCENTS for v in TEST_VARIANTS),
        "test_accents_train_variants": tuple(f"{a}+{v}" for a in TEST_ACCENTS for v in HEARD_VARIANTS)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="results/laptop/ctc_recipe/<run> (with trained.ckpt)")
    parser.add_argument("--n", type=int, default=150, help="test sentences per set")
    parser.add_argument("--beams", type=int, default=4)
    args = parser.parse_args(argv)
    cache = Path(os.environ.get("AVSR_SINKS_CACHE") or "~/.cache/avsr_sinks").expanduser() / "accent_or_variant"
    rows = list(csv.DictReader((args.run_dir / "espeak_test_utterances.csv").open()))
    first = {f"espeak/test/test_{i:05d}" for i in range(args.n)}
    own = [r for r in rows if r["id"] in first]
    result = {"checkpoint": str(args.run_dir / "trained.ckpt"), "sentences": args.n,
              "test_voices": corpus_wer([r["id"] for r in own], [r["reference"] for r in own],
                                        [r["hypothesis"] for r in own]).wer}
    for name, voices in SETS.items():
        # n_train/n_val 0: only the test split is needed; a training voice must differ from the test ones.
        corpus = ensure_espeak_corpus(cache / name, EspeakCorpusConfig(n_train=0, n_val=0, n_test=args.n,
                                                                       train_voices=("en-us+m1",), test_voices=voices))
        out = ROOT / "outputs" / "accent_or_variant" / args.run_dir.name / name
        subprocess.run([sys.executable, str(ROOT / "scripts" / "eval.py"), f"ckpt={args.run_dir / 'trained.ckpt'}",
                        "data=lrs3", f"data.root={corpus.root}", f"data.test_csv={corpus.test_csv}",
                        "data.num_workers=1", f"generation.num_beams={args.beams}", f"hydra.run.dir={out}"],
                       check=True, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"})
        table = json.loads((out / "wer_table.json").read_text())
        result[name] = {"voices": list(voices), "wer": table["rows"][0]["wer"],
                        "utterances": table["rows"][0]["utterances"], "checkpoint_step": table["checkpoint_step"]}
        print(f"{name}: WER {100 * result[name]['wer']:.1f} %", flush=True)
    print(f"the run's own test voices, same sentences: WER {100 * result['test_voices']:.1f} %")
    (args.run_dir / "accent_or_variant.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
