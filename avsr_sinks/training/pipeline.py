"""The training recipe: config -> data, model, Trainer -> fit -> test WER. No Hydra here."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from ..evaluation.runner import evaluate_loader
from ..model.avsr import GenerationSettings
from ..model.tasks import TASK_MODALITIES
from .build import build_model, trains_on_gpu
from .config_validation import validate_config
from .checkpoints import average_checkpoints
from .datamodule import AVSRDataModule, resolve_corpus, split_csv
from .module import AVSRModule, OptimSettings
from .resume import AtomicCheckpointIO, RandomStateCheckpoint, resolve_resume_checkpoint
from .sharding import build_strategy


def _precision(trainer_cfg: Mapping) -> str:
    if trainer_cfg.get("precision"):
        return trainer_cfg["precision"]
    return "bf16-mixed" if trains_on_gpu(trainer_cfg) else "32-true"


def _loggers(cfg: Mapping, output_dir: Path) -> list:
    loggers = []
    if cfg["logger"]["csv"]:
        loggers.append(CSVLogger(output_dir, name="csv"))
    wandb = cfg["logger"]["wandb"]
    if wandb["enabled"] and os.environ.get("WANDB_MODE") != "disabled":
        loggers.append(WandbLogger(project=wandb["project"], name=wandb["name"], save_dir=str(output_dir),
                                   offline=wandb["mode"] == "offline"))
    return loggers


def _checkpoint_callbacks(checkpoint_cfg: Mapping, folder: Path) -> list[ModelCheckpoint]:
    """The newest k epoch checkpoints (and ``last.ckpt``, the newest epoch's) and, every
    ``every_n_steps`` optimizer steps, the newest k step checkpoints. A file written again after a
    resume is replaced, not versioned (``-v1``). The step callback keeps away from ``last.ckpt``:
    Lightning would also write it at the end of training, after the epoch callback's."""
    def newest(filename: str, monitor: str, keep: int, **settings) -> ModelCheckpoint:
        return ModelCheckpoint(dirpath=folder, filename=filename, auto_insert_metric_name=False, monitor=monitor,
                               mode="max", save_top_k=keep, enable_version_counter=False, **settings)

    callbacks = [newest("epoch{epoch:03d}", "epoch", int(checkpoint_cfg["save_last_k"]), save_last=True)]
    every = int(checkpoint_cfg.get("every_n_steps") or 0)
    if every > 0:
        callbacks.append(newest("step{step:07d}", "step", int(checkpoint_cfg["keep_last_k_steps"]),
                                every_n_train_steps=every))
    return callbacks


def _callbacks(cfg: Mapping, output_dir: Path) -> list:
    callbacks = [*_checkpoint_callbacks(cfg["checkpoint"], output_dir / "checkpoints"), RandomStateCheckpoint()]
    if cfg["logger"]["csv"] or cfg["logger"]["wandb"]["enabled"]:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    every = int(cfg["sink_monitor"]["every_n_steps"])
    if every > 0:
        from .sink_monitor import SinkMonitor

        callbacks.append(SinkMonitor(every_n_steps=every))
    return callbacks


def train(cfg: Mapping) -> dict:
    """Run one training job; returns paths and the test WER (on rank 0)."""
    started = time.time()
    validate_config(cfg)
    output_dir = Path(str(cfg["output_dir"]))
    L.seed_everything(int(cfg["seed"]), workers=True)
    corpus = resolve_corpus(cfg["data"])
    for split in ("train", "val"):
        split_csv(corpus, cfg["data"], split)  # an evaluation-only corpus fails here, before the model loads
    model = build_model(cfg, corpus["vocabulary"])
    generation = GenerationSettings(**dict(cfg["generation"]))
    module = AVSRModule(model, OptimSettings(**dict(cfg["optim"])), generation, config=dict(cfg))
    modalities = TASK_MODALITIES[cfg["task"]["name"]]
    datamodule = AVSRDataModule(cfg["data"], corpus, modalities, seed=int(cfg["seed"]))

    trainer_cfg = {k: v for k, v in dict(cfg["trainer"]).items() if v is not None}
    trainer_cfg["precision"] = _precision(cfg["trainer"])
    trainer_cfg["strategy"] = build_strategy(cfg)
    resume_from = resolve_resume_checkpoint(cfg.get("ckpt_path"), output_dir / "checkpoints")
    trainer = L.Trainer(
        **trainer_cfg,
        default_root_dir=output_dir,
        logger=_loggers(cfg, output_dir),
        callbacks=_callbacks(cfg, output_dir),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # FrameBudgetBatchSampler shards by rank itself
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)

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
    result["skipped_samples"] = datamodule.skipped_samples()
    result["minutes"] = (time.time() - started) / 60
    return result
