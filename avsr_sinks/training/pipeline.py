"""The training recipe: config -> data, model, Trainer -> fit -> test WER. No Hydra here."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from ..evaluation.runner import evaluate_loader
from ..model.avsr import GenerationSettings
from ..model.tasks import TASK_MODALITIES
from .build import build_model
from .config_validation import validate_config
from .checkpoints import average_checkpoints
from .datamodule import AVSRDataModule, resolve_corpus
from .module import AVSRModule, OptimSettings


def _precision(trainer_cfg: Mapping) -> str:
    if trainer_cfg.get("precision"):
        return trainer_cfg["precision"]
    on_gpu = trainer_cfg.get("accelerator") in ("gpu", "cuda") or (
        trainer_cfg.get("accelerator") == "auto" and torch.cuda.is_available()
    )
    return "bf16-mixed" if on_gpu else "32-true"


def _wandb_installed() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def _loggers(cfg: Mapping, output_dir: Path) -> list:
    loggers = []
    if cfg["logger"]["csv"]:
        loggers.append(CSVLogger(output_dir, name="csv"))
    wandb = cfg["logger"]["wandb"]
    if wandb["enabled"] and os.environ.get("WANDB_MODE") != "disabled":
        if _wandb_installed():
            loggers.append(WandbLogger(project=wandb["project"], name=wandb["name"], save_dir=str(output_dir),
                                       offline=wandb["mode"] == "offline"))
        else:
            print("wandb logging off: wandb is not installed (pip install 'avsr_sinks[logging]', or logger=csv)")
    return loggers


def _callbacks(cfg: Mapping, output_dir: Path, logging: bool) -> list:
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="epoch",
        mode="max",
        save_top_k=int(cfg["checkpoint"]["save_last_k"]),
        save_last=True,
    )
    callbacks = [checkpoint]
    if logging:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    every = int(cfg["sink_monitor"]["every_n_steps"])
    if every > 0:
        from .sink_monitor import SinkMonitor

        callbacks.append(SinkMonitor(every_n_steps=every))
    return callbacks


def _ignore_known_warnings() -> None:
    """Warnings of the first run that are not ours to fix, or are intended."""
    # Lightning warns that the frozen encoders are in eval mode; they are on purpose (DESIGN.md §2:
    # no dropout in frozen encoders), and LlamaAVSR keeps them so.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
    # Lightning's pytree helper uses torch's deprecated LeafSpec check (Lightning 2.6 on torch 2.13).
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def train(cfg: Mapping) -> dict:
    """Run one training job; returns paths, the test WER and where the time went (on rank 0)."""
    clock = time.perf_counter()
    seconds = {}

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = time.perf_counter() - clock
        clock = time.perf_counter()

    validate_config(cfg)
    _ignore_known_warnings()
    output_dir = Path(str(cfg["output_dir"]))
    L.seed_everything(int(cfg["seed"]), workers=True)
    corpus = resolve_corpus(cfg["data"])
    lap("corpus")
    model = build_model(cfg, corpus["vocabulary"])
    generation = GenerationSettings(**dict(cfg["generation"]))
    module = AVSRModule(model, OptimSettings(**dict(cfg["optim"])), generation, config=dict(cfg))
    modalities = TASK_MODALITIES[cfg["task"]["name"]]
    datamodule = AVSRDataModule(cfg["data"], corpus, modalities, seed=int(cfg["seed"]), limits=model.sample_limits())
    lap("model")

    trainer_cfg = {k: v for k, v in dict(cfg["trainer"]).items() if v is not None}
    trainer_cfg["precision"] = _precision(cfg["trainer"])
    loggers = _loggers(cfg, output_dir)
    trainer = L.Trainer(
        **trainer_cfg,
        default_root_dir=output_dir,
        logger=loggers,
        callbacks=_callbacks(cfg, output_dir, logging=bool(loggers)),
        use_distributed_sampler=False,  # FrameBudgetBatchSampler shards by rank itself
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    lap("training")

    result = {"output_dir": str(output_dir), "checkpoint_dir": str(output_dir / "checkpoints")}
    if not trainer.is_global_zero:
        return result
    checkpoint_cb = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    result["last_checkpoint"] = checkpoint_cb.last_model_path
    k = int(cfg["checkpoint"]["average_last_k"])
    if k > 1:
        epochs = sorted(checkpoint_cb.best_k_models, key=lambda p: checkpoint_cb.best_k_models[p])[-k:]
        result["averaged_checkpoint"] = str(average_checkpoints(epochs, output_dir / "checkpoints" / "averaged.ckpt"))
    if cfg.get("run_test", True):
        test = evaluate_loader(module.model, datamodule.test_dataloader(), generation, output_dir / "eval", "test")
        result["test_wer"] = test.wer
        result["test_summary"] = test.summary()
        lap("test decode")
    result["skipped_samples"] = datamodule.skipped_samples()
    result["seconds"] = seconds
    result["minutes"] = sum(seconds.values()) / 60
    return result
