"""Print the REPORT.md tables from the per-run result folders that run_all.sh fills.

    python results/laptop/tables.py
"""

import json
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
RUNS = ["pretrained", "lambda0", "lambda10", "lambda100", "lambda1e4", "sink_logit_unmoved", "sink_logit",
        "gated_attention", "gated_attention_step1671",
        "c16_lambda0", "c16_lambda100", "c16_sink_logit", "c16_gated_attention"]


def load(run: str, name: str):
    path = HERE / run / name
    return json.loads(path.read_text()) if path.is_file() else None


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main() -> None:
    print("| run | espeak test WER % | LibriVox WER % | alpha BOS | alpha strongest intermediate | "
          "intermediate sink (token: utterances; layers) | max act/median | mean cos with BOS |")
    print("|---|---|---|---|---|---|---|---|")
    for run in RUNS:
        sinks = load(run, "sink_summary.json")
        if sinks is None:
            continue
        espeak = load(run, "espeak_test_wer.json")
        librivox = load(run, "librivox_wer.json")
        mean = sinks["mean"]
        labels = ", ".join(f"`{label}`: {n}" for label, n in Counter(
            u["intermediate_label"] for u in sinks["per_utterance"].values() if u["intermediate_label"]).most_common())
        layers = sorted({u["intermediate_layer"] for u in sinks["per_utterance"].values()
                         if u["intermediate_layer"] is not None})
        print(f"| {run} | {percent(espeak and espeak['wer'])} | "
              f"{percent(librivox and librivox['rows'][0]['wer'])} | {mean['bos_alpha']:.3f} | "
              f"{mean['intermediate_alpha']:.3f} | {labels or 'none'}; {layers} | "
              f"{mean['max_activation_ratio']:.0f} | {mean['mean_bos_cosine']:.3f} |")


if __name__ == "__main__":
    main()
