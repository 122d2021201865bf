"""Learning curves of the laptop ablations: validation WER and loss, and the projector's scale.

    python results/laptop/ablations/curves.py [NAME ...]     (default: every run under outputs/)

Reads each run's Lightning CSV log (outputs/laptop/ablations/NAME/csv/version_*/metrics.csv),
copies it to results/laptop/ablations/NAME/train_metrics.csv (kept in the repository), and
writes results/laptop/ablations/curves.png and curves.md (one row per run); the WER panel also
shows the Whisper decoder probes (results/laptop/whisper_decoder_probe*.json) and the CTC projector
probe (ctc_projector_probe.json) for reference. Runs whose log is
only in results/ (an earlier session's) are read from there.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUTS = HERE.parents[2] / "outputs" / "laptop" / "ablations"


def metrics_file(name: str) -> Path | None:
    logs = sorted((OUTPUTS / name / "csv").glob("version_*/metrics.csv"))
    if logs:
        (HERE / name).mkdir(exist_ok=True)
        shutil.copyfile(logs[-1], HERE / name / "train_metrics.csv")
    kept = HERE / name / "train_metrics.csv"
    return kept if kept.is_file() else None


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def smooth(points: list[tuple[int, float]], window: int = 10) -> list[tuple[int, float]]:
    return [(points[i][0], sum(v for _, v in points[max(0, i - window + 1): i + 1]) / len(points[max(0, i - window + 1): i + 1]))
            for i in range(len(points))]


def main(names: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not names:
        live = {p.name for p in OUTPUTS.iterdir() if p.is_dir()} if OUTPUTS.is_dir() else set()
        names = sorted(live | {p.name for p in HERE.iterdir() if (p / "train_metrics.csv").is_file()})
    runs = {}
    for name in names:
        path = metrics_file(name)
        if path is not None:
            runs[name] = list(csv.DictReader(path.open()))
    if not runs:
        print("no run logs found", file=sys.stderr)
        return 2
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    lines = ["| run | steps | val WER % by step | last val CE | train CE (last 50 steps) | audio token norm / text norm (last) |",
             "|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        wer, val_ce = series(rows, "val/wer"), series(rows, "val/ce")
        train_ce = series(rows, "train/ce")
        audio, text = series(rows, "train/input_norm_audio"), series(rows, "train/input_norm_text")
        line = axes[0].plot([s for s, _ in wer], [100 * v for _, v in wer], marker="o", label=name)[0]
        axes[1].plot([s for s, _ in val_ce], [v for _, v in val_ce], marker="o", color=line.get_color())
        if train_ce:
            axes[2].plot(*zip(*smooth(train_ce)), color=line.get_color())
        if audio:
            axes[3].plot(*zip(*audio), color=line.get_color())
            axes[3].plot(*zip(*text), color=line.get_color(), linestyle="--")
        recent = [v for s, v in train_ce if s > train_ce[-1][0] - 50] if train_ce else []
        cells = [name, str(train_ce[-1][0] + 1 if train_ce else 0),
                 ", ".join(f"{s + 1}: {100 * v:.1f}" for s, v in wer) or "-",
                 f"{val_ce[-1][1]:.3f}" if val_ce else "-",
                 f"{sum(recent) / len(recent):.3f}" if recent else "-",
                 f"{audio[-1][1]:.1f} / {text[-1][1]:.2f}" if audio else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    # Reference: Whisper's own decoder fine-tuned on the same frozen features (test WER, 100 utterances).
    for probe in sorted(HERE.parent.glob("whisper_decoder_probe*.json")):
        result = json.loads(probe.read_text())
        steps, wers = zip(*result["test_wer_curve"][1:])
        axes[0].plot(steps, [100 * w for w in wers], linestyle=":", marker="x",
                     label=f"Whisper decoder probe, {result.get('n_train', 3000)} sentences, "
                           f"{result.get('train_voices', 48)} voices (test)")
    # The projector alone, trained with the embedding CTC and greedy CTC-decoded (no LLM).
    for probe in sorted(HERE.parent.glob("ctc_projector_probe*.json")):
        steps, wers = zip(*json.loads(probe.read_text())["test_wer_curve"][1:])
        axes[0].plot(steps, [100 * w for w in wers], linestyle="--", marker="+", color="grey",
                     label="projector + CTC alone, greedy (test)")
    for ax, title in zip(axes, ("validation WER %", "validation CE", "training CE (10-step mean)",
                                "input norm: audio tokens (solid), transcript embeddings (dashed)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[3].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)
    (HERE / "curves.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
