"""Evaluation of a checkpoint over noise levels: one WER table plus per-utterance CSVs."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import AVSRDataset, FrameBudgetBatchSampler, NoiseConfig, collate_samples
from ..evaluation.runner import evaluate_loader, process_rank_and_count
from ..sinks.baselines import apply_act, load_act_heads
from ..model.avsr import GenerationSettings
from ..model.tasks import TASK_MODALITIES
from .checkpoints import checkpoint_step, load_trained_model
from .datamodule import resolve_corpus, split_csv


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def launch_processes(device: str, trainer: Mapping | None) -> torch.device:
    """The device of this process. ``trainer.devices`` x ``trainer.num_nodes`` > 1 starts that many
    processes (Lightning Fabric, DDP; this script runs again in each), which decode a split
    together, each its shard; one process runs on ``device`` as before."""
    trainer = trainer or {}
    devices, nodes = int(trainer.get("devices", 1)), int(trainer.get("num_nodes", 1))
    if devices * nodes == 1:
        return _device(device)
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator={"auto": "auto", "cpu": "cpu", "cuda": "cuda"}[device], devices=devices, num_nodes=nodes,
                    strategy="ddp")
    fabric.launch()
    return fabric.device


def generation_settings(generation: Mapping, run_config: Mapping) -> GenerationSettings:
    """Decoding settings for a checkpoint; ``max_new_tokens`` null = the limit its training used
    (which it derived from the longest training transcript, unless set)."""
    settings = dict(generation)
    if settings.get("max_new_tokens") is None:
        settings["max_new_tokens"] = run_config["generation"]["max_new_tokens"]
    return GenerationSettings(**settings)


def _levels(snrs) -> list[float | None]:
    """``clean`` -> None, numbers -> dB. Rejects anything else with the config key."""
    levels = []
    for level in snrs if isinstance(snrs, (list, tuple)) else [snrs]:
        if str(level).lower() == "clean":
            levels.append(None)
            continue
        try:
            levels.append(float(level))
        except (TypeError, ValueError):
            raise ValueError(f"eval.snr has {level!r}: use numbers (dB) and/or 'clean', e.g. eval.snr=[-5,0,5,clean]") from None
    return levels


def split_loader(config: Mapping, split: str, noise: NoiseConfig | None = None) -> tuple[AVSRDataset, DataLoader]:
    """The ordered, unaugmented evaluation loader of ``split`` for a run config."""
    data = config["data"]
    corpus = resolve_corpus(data)
    dataset = AVSRDataset(corpus["root"], split_csv(corpus, data, split), modalities=TASK_MODALITIES[config["task"]["name"]],
                          split=split, noise=noise, strict=data.get("strict", False), seed=int(config["seed"]), augment=False)
    loader = DataLoader(dataset, batch_sampler=FrameBudgetBatchSampler(dataset.lengths, data["eval_max_frames"], shuffle=False, seed=0),
                        collate_fn=collate_samples, num_workers=int(data.get("num_workers", 0)))
    return dataset, loader


def apply_act_from_config(model, act: Mapping | None):
    """ACT on the heads of ``act.heads_file`` (written by scripts/search_act_heads.py); None if unset."""
    if not act or not act.get("heads_file"):
        return None
    heads = load_act_heads(act["heads_file"])
    return apply_act(model.llm, heads, beta=float(act["beta"]), threshold=float(act["threshold"]),
                     apply_during_decoding=bool(act["during_decoding"]))


def evaluate_checkpoint(cfg: Mapping) -> dict | None:
    """Decode ``cfg['split']`` at every level of ``cfg['eval']['snr']``; write the table and CSVs.
    With ``trainer.devices`` > 1 every process decodes its shard; rank 0 writes the files and
    returns the table, the other processes return None."""
    levels = _levels(cfg["eval"]["snr"])
    if cfg["split"] not in ("test", "val"):
        raise ValueError(f"split={cfg['split']!r}: choose test or val")
    device = launch_processes(cfg["device"], cfg.get("trainer"))
    checkpoint_data = {k: v for k, v in cfg["data"].items() if v is not None}
    model, config = load_trained_model(cfg["ckpt"], data_overrides=checkpoint_data)
    model.to(device)
    apply_act_from_config(model, cfg.get("act"))
    modalities = TASK_MODALITIES[config["task"]["name"]]
    generation = generation_settings(cfg["generation"], config)
    out_dir = Path(str(cfg["output_dir"]))
    rows = []
    for level in levels:
        noise = None if level is None else NoiseConfig(snr_db=level, noise_file=cfg["eval"]["noise_file"], kind=cfg["eval"]["noise_kind"])
        if noise is not None and "audio" not in modalities:
            raise ValueError(f"eval.snr={level}: task {config['task']['name']} has no audio to add noise to; use eval.snr=[clean]")
        _, loader = split_loader(config, cfg["split"], noise)
        tag = f"{cfg['split']}_{'clean' if level is None else f'snr{level:g}'}"
        result = evaluate_loader(model, loader, generation, out_dir, tag)
        rows.append({"snr": "clean" if level is None else level, **result.summary()})
    if process_rank_and_count()[0] != 0:
        return None
    with (out_dir / "wer_table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    act_file = (cfg.get("act") or {}).get("heads_file")
    table = {"checkpoint": str(cfg["ckpt"]), "checkpoint_step": checkpoint_step(cfg["ckpt"]),
             "task": config["task"]["name"], "split": cfg["split"],
             "act_heads": load_act_heads(act_file) if act_file else None, "rows": rows}
    (out_dir / "wer_table.json").write_text(json.dumps(table, indent=2))
    return table
