"""One table comparing sink mitigations on trained checkpoints: WER, sink statistics and costs.

Methods: ``base`` (no mitigation), ``decor`` (decorrelation loss), ``sink_logit`` and
``gated_attention`` (fine-tuning-time baselines), each its own checkpoint, and ``act`` (ACT at
inference on the base checkpoint with a head file). Every method is measured the same way, in
one process, on the same utterances and batches.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections.abc import Mapping
from itertools import islice
from pathlib import Path

import torch

from ..evaluation.runner import evaluate_loader
from ..evaluation.significance import paired_bootstrap_wer_delta
from ..evaluation.wer import UtteranceErrors
from ..model.tasks import TASK_MODALITIES
from .analyze import analyze_model
from .checkpoints import checkpoint_step, load_trained_model
from .datamodule import AVSRDataModule, resolve_corpus
from .evaluate import _device, apply_act_from_config, generation_settings, split_loader

COLUMNS = ["method", "wer", "wer_delta", "wer_delta_low", "wer_delta_high", "intermediate_alpha", "bos_alpha", "max_activation_ratio", "mean_bos_cosine",
           "train_step_ms", "decode_ms_per_utterance", "checkpoint", "checkpoint_step"]


def _train_step_ms(model, batches: list[dict], device: torch.device, passes: int) -> float:
    """Time of forward + backward (the method's full loss; the optimizer step, the same for every
    method, is left out): each batch's fastest of ``passes`` timed passes, averaged over the batches.
    An untimed first pass warms every batch shape (allocator, kernels picked per shape); the minimum
    drops brief interruptions (they only ever add time). Slower drift within a process remains: on
    a shared 2-core CPU the same step read up to a third apart (results/laptop/REPORT.md, section 6)."""
    model.train()
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()} for batch in batches]
    fastest = [float("inf")] * len(batches)
    for timed_pass in range(passes + 1):
        for i, batch in enumerate(batches):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(batch).loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if timed_pass > 0:
                fastest[i] = min(fastest[i], time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
    model.eval()
    return 1e3 * statistics.mean(fastest)


def _measure(method: str, checkpoint: str, act: Mapping | None, cfg: Mapping, out_dir: Path) -> tuple[dict, list[UtteranceErrors]]:
    model, config = load_trained_model(checkpoint, {k: v for k, v in cfg["data"].items() if v is not None})
    device = _device(cfg["device"])
    model.to(device)
    handle = apply_act_from_config(model, act)
    # The batches train.py runs first (training batch size, shuffle and augmentation of the run's seed).
    train_loader = AVSRDataModule(config["data"], resolve_corpus(config["data"]), TASK_MODALITIES[config["task"]["name"]],
                                  seed=int(config["seed"]), limits=model.sample_limits()).train_dataloader()
    batches = list(islice((batch for batch in train_loader if batch["ids"]), int(cfg["train_steps"])))  # not all-skipped ones
    step_ms = _train_step_ms(model, batches, device, int(cfg["timing_passes"]))
    _, loader = split_loader(config, cfg["split"])
    start = time.perf_counter()
    result = evaluate_loader(model, loader, generation_settings(cfg["generation"], config), out_dir / method, cfg["split"])
    decode_ms = 1e3 * (time.perf_counter() - start) / max(len(result.utterances), 1)
    sinks = analyze_model(model, config, cfg["split"], int(cfg["num_samples"]), out_dir / method / "sinks")["mean"]
    if handle is not None:
        handle.remove()
    row = {"method": method, "wer": result.wer, **sinks, "train_step_ms": step_ms,
           "decode_ms_per_utterance": decode_ms, "checkpoint": checkpoint, "checkpoint_step": checkpoint_step(checkpoint)}
    return row, result.utterances


def _add_wer_deltas(measured: list[tuple[dict, list[UtteranceErrors]]], bootstrap: Mapping) -> None:
    """WER(method) - WER(base) with its paired-bootstrap interval over the test utterances."""
    base_utterances = measured[0][1]
    for row, utterances in measured:
        row.update(wer_delta=None, wer_delta_low=None, wer_delta_high=None)
        if row["method"] == "base":
            continue
        try:
            delta = paired_bootstrap_wer_delta(base_utterances, utterances, int(bootstrap["resamples"]),
                                               float(bootstrap["confidence"]))
        except ValueError as err:  # another test set: no paired interval, the rest of the row stands
            print(f"compare: no WER interval for {row['method']}: {err}")
            continue
        row.update(wer_delta=delta.delta, wer_delta_low=delta.low, wer_delta_high=delta.high)


def compare_methods(cfg: Mapping) -> list[dict]:
    """Measure every method whose checkpoint is set in ``cfg['runs']`` (plus ``act`` when
    ``cfg['act']['heads_file']`` is set); writes ``comparison.csv``, ``.json`` and ``.md``."""
    runs = {name: path for name, path in cfg["runs"].items() if path}
    if "base" not in runs:
        raise ValueError("runs.base is not set: the comparison needs the unmitigated checkpoint")
    if int(cfg["timing_passes"]) < 1:  # before any checkpoint loads
        raise ValueError(f"timing_passes={cfg['timing_passes']} must be at least 1")
    out_dir = Path(str(cfg["output_dir"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    # Measured in table order, ACT right after the base: the two run the same training step, so
    # their time difference is the timing noise, and drift over the process cannot hide in it.
    plan = [("base", runs["base"], None)]
    if cfg["act"].get("heads_file"):
        plan.append(("act", runs["base"], cfg["act"]))
    plan += [(name, path, None) for name, path in runs.items() if name != "base"]
    measured = [_measure(name, str(path), act, cfg, out_dir) for name, path, act in plan]
    _add_wer_deltas(measured, cfg["bootstrap"])
    rows = [row for row, _ in measured]
    with (out_dir / "comparison.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "comparison.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "comparison.md").write_text(markdown_table(rows, float(cfg["bootstrap"]["confidence"])))
    return rows


def _delta_cell(row: dict) -> str:
    if row.get("wer_delta") is None:
        return "-"
    return f"{100 * row['wer_delta']:+.2f} [{100 * row['wer_delta_low']:+.2f}, {100 * row['wer_delta_high']:+.2f}]"


def markdown_table(rows: list[dict], confidence: float) -> str:
    header = (f"| method | WER % | WER - base [{100 * confidence:g}% CI] | alpha intermediate | alpha BOS | max act/median | cos with BOS | "
              "train step ms | decode ms/utt |\n|---|---|---|---|---|---|---|---|---|\n")
    return header + "".join(
        f"| {r['method']} | {100 * r['wer']:.2f} | {_delta_cell(r)} | {r['intermediate_alpha']:.3f} | {r['bos_alpha']:.3f} | "
        f"{r['max_activation_ratio']:.1f} | {r['mean_bos_cosine']:.3f} | {r['train_step_ms']:.0f} | "
        f"{r['decode_ms_per_utterance']:.0f} |\n" for r in rows)
