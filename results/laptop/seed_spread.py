"""Does the decorrelation loss change WER beyond the spread between seeds? (REPORT section 11)

    python results/laptop/seed_spread.py [--prefix c16_] [--lambda 100]

Reads the per-utterance test CSVs of <prefix>lambda0, <prefix>lambda0_seed2, <prefix>lambda<λ>
and <prefix>lambda<λ>_seed2 under results/laptop/ctc_recipe/ (whichever exist), recounts each
WER from the reference and hypothesis columns, and writes <prefix>seed_spread_lambda<λ>.json beside them:
each run's WER; per seed, WER(λ) - WER(0) with its paired-bootstrap interval over the test
utterances; per λ, the difference between the two seeds (the spread a second training gives);
and the mean λ effect over the seeds. The bootstrap covers the choice of test utterances only;
the seed spread covers initialisation, data order and dropout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from avsr_sinks.evaluation.significance import paired_bootstrap_wer_delta
from avsr_sinks.evaluation.wer import WERResult, recount_utterance_csv

RUNS = Path(__file__).resolve().parent / "ctc_recipe"
SEEDS = {"1": "", "2": "_seed2"}  # seed 1234 (the preset's) and 1235 (run_all.sh's *_seed2 runs)


def recounted(run: str) -> WERResult | None:
    path = RUNS / run / "espeak_test_utterances.csv"
    return recount_utterance_csv(path) if path.is_file() else None


def spread(prefix: str, lam: str) -> dict:
    names = {(l, s): f"{prefix}lambda{l}{suffix}" for l in ("0", lam) for s, suffix in SEEDS.items()}
    results = {key: recounted(name) for key, name in names.items()}
    report: dict = {"runs": {names[k]: (None if r is None else r.wer) for k, r in results.items()},
                    "lambda_effect": {}, "seed_spread": {}}
    for seed in SEEDS:
        base, decor = results[("0", seed)], results[(lam, seed)]
        if base and decor:
            delta = paired_bootstrap_wer_delta(base.utterances, decor.utterances)
            report["lambda_effect"][f"seed {seed}"] = {"delta": delta.delta, "low": delta.low, "high": delta.high,
                                                       "confidence": delta.confidence}
    for l in ("0", lam):
        first, second = results[(l, "1")], results[(l, "2")]
        if first and second:
            report["seed_spread"][f"lambda {l}"] = second.wer - first.wer
    effects = [e["delta"] for e in report["lambda_effect"].values()]
    if len(effects) == len(SEEDS):
        report["mean_lambda_effect"] = sum(effects) / len(effects)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="c16_", help="run-name prefix: c16_ for compression 16, '' for 4")
    parser.add_argument("--lambda", dest="lam", default="100", help="the λ compared against 0, as in the run names")
    args = parser.parse_args()
    report = spread(args.prefix, args.lam)
    out = RUNS / f"{args.prefix}seed_spread_lambda{args.lam}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
