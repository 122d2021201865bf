"""results/laptop/summary.json: one entry per run of the laptop experiments, machine-readable,
and results/laptop/ctc_recipe/val_wer_curves.png, their validation WER against the step.

    python results/laptop/summary.py

Reads the result folders that run_all.sh's ``collect`` fills (results/laptop/ctc_recipe/<run>/: config.yaml,
train_metrics.csv, espeak_test_wer.json + espeak_test_utterances.csv, librivox_wer.json,
sink_summary.json) and the ACT rows of the comparison tables (<prefix>comparison.json, ACT
being applied at test time to the λ = 0 model). Folders without a config.yaml (runs of sessions
before it was collected) are listed on stderr and left out: their method and seed cannot be
read back. Every WER is recomputed from the per-utterance CSV and checked against the JSON.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

from avsr_sinks.evaluation.wer import recount_utterance_csv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = HERE / "ctc_recipe"  # the current recipe's runs; the earlier preset's stay in results/laptop/<run>


def method_of(config: dict) -> str:
    kind = (config.get("baseline") or {}).get("kind", "none")
    if kind in ("sink_logit", "gated_attention"):
        return kind
    return "decor" if float(config["decor"]["lambda"]) > 0 else "base"


def compression_of(config: dict) -> int:
    value = config["compression"]
    return int(value[0] if isinstance(value, list) else value)


def accents(voices: list[str] | None) -> list[str] | None:
    """The espeak-ng accents of a voice list (``en-gb+m3`` -> ``en-gb``); None where the split uses
    the corpus's default voices (validation: the training voices)."""
    return sorted({voice.split("+")[0] for voice in voices}) if voices else None


def metrics(folder: Path) -> tuple[int | None, float | None, list[list[float]]]:
    """(steps trained, training minutes, [[step, val WER], ...]) of a run's Lightning CSV log."""
    path = folder / "train_metrics.csv"
    if not path.is_file():
        return None, None, []
    rows = list(csv.DictReader(path.open()))
    steps = max((int(r["step"]) + 1 for r in rows if r.get("train/loss")), default=None)
    minutes = [float(r["train/minutes"]) for r in rows if r.get("train/minutes")]
    curve = [[int(r["step"]) + 1, float(r["val/wer"])] for r in rows if r.get("val/wer")]
    return steps, (max(minutes) if minutes else None), curve


def load_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def of_trained_state(result: dict | None, steps: int | None, path: Path) -> dict | None:
    """``result`` (eval.py's or analyze.py's) if it measured the state training ended in, else None
    with a line on stderr: until the fix of NewestCheckpoint, last.ckpt of a run that validated
    every N steps kept its first validation's state (results without checkpoint_step are of then)."""
    if result is None:
        return None
    if result.get("checkpoint_step") != steps:
        print(f"left out {path.relative_to(ROOT)}: it measured the checkpoint of step {result.get('checkpoint_step')}, "
              f"not the trained model's (step {steps})", file=sys.stderr)
        return None
    return result


def run_entry(folder: Path) -> dict:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    steps, minutes, curve = metrics(folder)
    espeak = load_json(folder / "espeak_test_wer.json")
    utterances = folder / "espeak_test_utterances.csv"
    if espeak is not None:
        recounted = recount_utterance_csv(utterances).wer
        if abs(recounted - espeak["wer"]) > 1e-9:
            raise ValueError(f"{utterances}: the per-utterance errors give WER {recounted:.6f}, "
                             f"{folder / 'espeak_test_wer.json'} says {espeak['wer']:.6f}")
    librivox = of_trained_state(load_json(folder / "librivox_wer.json"), steps, folder / "librivox_wer.json")
    sinks = (of_trained_state(load_json(folder / "sink_summary.json"), steps, folder / "sink_summary.json")
             or {}).get("mean", {})
    return {
        "name": folder.name, "method": method_of(config), "compression": compression_of(config),
        "lambda": float(config["decor"]["lambda"]), "seed": int(config["seed"]),
        "audio_encoder": Path(str(config["model"]["audio_encoder"]["path"])).name,
        **{key: float((config["data"].get("espeak") or {}).get(key, 0.0)) for key in ("phoneme_swap", "phoneme_drop")},
        # The dev-accent runs validate on an accent left out of training, the others on the training voices.
        **{f"{split}_accents": accents((config["data"].get("espeak") or {}).get(f"{split}_voices"))
           for split in ("train", "val")},
        "steps": steps,
        "train_minutes": minutes,
        "espeak_test_wer": espeak and espeak["wer"],
        "librivox_wer": librivox and next(r["wer"] for r in librivox["rows"] if r["snr"] == "clean"),
        "val_wer_curve": curve,
        **{key: sinks.get(key) for key in ("bos_alpha", "intermediate_alpha", "max_activation_ratio", "mean_bos_cosine")},
        "espeak_test_csv": str(utterances.relative_to(ROOT)) if utterances.is_file() else None,
    }


def act_entries(runs: dict[str, dict]) -> list[dict]:
    """ACT rows of each comparison table, attached to the λ = 0 run they were applied to."""
    entries = []
    for table in sorted(RUNS.glob("*comparison.json")):
        for row in json.loads(table.read_text()):
            if row["method"] != "act":
                continue
            checkpoint = Path(row["checkpoint"])  # outputs/laptop/<run>/checkpoints/last.ckpt or <RUNS>/<run>/trained.ckpt
            base = runs.get(checkpoint.parents[1].name if checkpoint.parent.name == "checkpoints" else checkpoint.parent.name)
            if base is None:
                continue
            entries.append({**base, "name": f"{base['name']}_act", "method": "act", "espeak_test_wer": row["wer"],
                            "librivox_wer": None, "espeak_test_csv": None,
                            **{key: row.get(key) for key in ("bos_alpha", "intermediate_alpha", "max_activation_ratio",
                                                             "mean_bos_cosine")}})
    return entries


def main() -> int:
    runs, skipped = {}, []
    for folder in sorted(p for p in RUNS.iterdir() if p.is_dir()):
        if (folder / "config.yaml").is_file():
            runs[folder.name] = run_entry(folder)
        elif (folder / "train_metrics.csv").is_file() or (folder / "sink_summary.json").is_file():
            skipped.append(folder.name)
    if skipped:
        print(f"left out (no config.yaml): {', '.join(skipped)}", file=sys.stderr)
    entries = list(runs.values()) + act_entries(runs)
    (HERE / "summary.json").write_text(json.dumps(entries, indent=1) + "\n")
    print(f"{HERE / 'summary.json'}: {len(entries)} runs")
    plot_curves(list(runs.values()), RUNS / "val_wer_curves.png")
    return 0


def plot_curves(entries: list[dict], output: Path) -> None:
    """Validation WER (the training voices, or a dev accent, decoded as the run's generation settings say) against
the step, one line per run, and its test WER (the held-out voices) as a star at its last step."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e .[plots]): no curves figure", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compressions = sorted({entry["compression"] for entry in entries if entry["val_wer_curve"]})
    fig, axes = plt.subplots(1, len(compressions), figsize=(7 * len(compressions), 6.5), squeeze=False)
    for ax, compression in zip(axes[0], compressions):
        for entry in entries:
            if not entry["val_wer_curve"] or entry["compression"] != compression:
                continue
            steps, wers = zip(*entry["val_wer_curve"])
            dev = bool(entry["val_accents"])  # validated on a dev accent, not on the training voices
            line, = ax.plot(steps, [100 * w for w in wers], marker="o", markersize=3, linestyle="--" if dev else "-",
                            label=entry["name"] + (f" (validation: {', '.join(entry['val_accents'])})" if dev else ""))
            if entry["espeak_test_wer"] is not None:  # the held-out voices, after the last step
                ax.plot(steps[-1], 100 * entry["espeak_test_wer"], marker="*", markersize=12, color=line.get_color(),
                        linestyle="none")
        ax.set(xlabel="training step", ylabel="WER %", ylim=(0, 100), title=f"compression {compression}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("laptop_asr: validation WER (lines; training voices unless a dev accent is named) and test WER on the "
                 "held-out voices (stars)\nthe first model.projector.ctc_warmup_steps steps train the projector alone",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    print(f"{output}")


if __name__ == "__main__":
    sys.exit(main())
