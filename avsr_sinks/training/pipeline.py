"""The training recipe: config -> data, model, Trainer -> fit -> test WER. No Hydra here."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from ..evaluation.runner import evaluate_loader
from ..model.avsr import GenerationSettings, max_new_tokens_for
from ..model.gradient_coverage import gradient_coverage
from ..model.tasks import TASK_MODALITIES
from .build import build_model, trains_on_gpu
from .config_validation import ConfigError, validate_config
from .checkpoints import average_checkpoints
from .datamodule import AVSRDataModule, resolve_corpus
from .feature_caches import prepare_feature_caches
from .module import AVSRModule, OptimSettings
from .clock import TrainingClock
from .resume import AtomicCheckpointIO, RandomStateCheckpoint, resolve_resume_checkpoint
from .sharding import build_strategy


def _precision(trainer_cfg: Mapping) -> str:
    if trainer_cfg.get("precision"):
        return trainer_cfg["precision"]
    return "bf16-mixed" if trains_on_gpu(trainer_cfg) else "32-true"


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


class NewestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose ``last.ckpt`` (with ``save_last``) is always the state
    training ended in. Lightning rewrites ``last.ckpt`` only beside a new top-k file, and not at
    the end of training once it has written one: a run that validates every N steps and stops
    mid-epoch (experiment=laptop_asr: 4200 steps of a ~5000-step epoch) kept the state of its
    first validation, and eval.py, analyze.py and the run's trained.ckpt read that instead of
    the trained model."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.save_last or trainer.fast_dev_run or trainer.sanity_checking:
            return
        if self.last_model_path and self._last_global_step_saved == trainer.global_step:
            return  # written at this step already (an epoch end, a validation)
        last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        self.last_model_path = str(last)  # before saving: it is part of the saved callback state
        trainer.save_checkpoint(last)


def _checkpoint_callbacks(checkpoint_cfg: Mapping, folder: Path) -> list[ModelCheckpoint]:
    """The newest k epoch checkpoints (each the newest state of its epoch: validations
    within an epoch rewrite its file), ``last.ckpt`` (the state training ended in) and, every
    ``every_n_steps`` optimizer steps, the newest k step checkpoints. A file written again after a
    resume is replaced, not versioned (``-v1``). The step callback keeps away from ``last.ckpt``:
    the epoch callback writes it at the end of training."""
    def newest(filename: str, keep: int, **settings) -> ModelCheckpoint:
        return NewestCheckpoint(dirpath=folder, filename=filename, auto_insert_metric_name=False, monitor="step",
                                mode="max", save_top_k=keep, enable_version_counter=False, **settings)

    callbacks = [newest("epoch{epoch:03d}", int(checkpoint_cfg["save_last_k"]), save_last=True)]
    every = int(checkpoint_cfg.get("every_n_steps") or 0)
    if every > 0:
        callbacks.append(newest("step{step:07d}", int(checkpoint_cfg["keep_last_k_steps"]),
                                every_n_train_steps=every))
    return callbacks


def _callbacks(cfg: Mapping, output_dir: Path) -> list:
    callbacks = [*_checkpoint_callbacks(cfg["checkpoint"], output_dir / "checkpoints"), RandomStateCheckpoint(),
                 TrainingClock()]
    every = int(cfg["sink_monitor"]["every_n_steps"])
    if every > 0:
        from .sink_monitor import SinkMonitor

        callbacks.append(SinkMonitor(every_n_steps=every))
    return callbacks


# The config key that sets each encoder's layer dropping (a from-scratch encoder's topology).
LAYERDROP_KEYS = {"encoders.video": "model.video_encoder.config.layerdrop",
                  "encoders.audio": "model.audio_encoder.config.encoder_layerdrop"}


def check_gradient_coverage(module: AVSRModule, datamodule: AVSRDataModule, processes: int) -> None:
    """Fail before training when a trainable parameter cannot get a gradient (one forward and
    backward of two training samples), and, with more than one process, when a trainable layer
    is skipped at random: DDP (without the per-step cost of find_unused_parameters) stops at the
    second step on either."""
    coverage = gradient_coverage(module.model, lambda model: model(datamodule.probe_batch()).loss)
    if coverage.without_gradient:
        names = coverage.without_gradient
        raise RuntimeError(f"{len(names)} trainable parameters get no gradient from a training step of "
                           f"task={module.model.task}: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}. "
                           "Freeze them (requires_grad=False) or leave their module out of the model: they never "
                           "train, and DDP stops at its second step waiting for their gradients.")
    if processes > 1 and coverage.random_layer_skips:
        keys = [next((key for prefix, key in LAYERDROP_KEYS.items() if name.startswith(prefix)), name)
                for name in coverage.random_layer_skips]
        raise ConfigError(", ".join(keys), "> 0", f"{', '.join(coverage.random_layer_skips)} skip trainable layers at random "
                          f"(layerdrop), which DDP cannot train on {processes} processes", f"set {', '.join(f'{k}=0' for k in keys)}")


def fitted_generation(generation: Mapping, model, datamodule: AVSRDataModule) -> dict:
    """``generation`` with ``max_new_tokens`` null replaced by a limit that fits the training
    transcripts (``max_new_tokens_for`` their longest, in the LLM's tokens)."""
    generation = dict(generation)
    if generation.get("max_new_tokens") is None:
        longest = max(map(len, model.tokenize_transcripts(datamodule.transcripts("train"))), default=0)
        generation["max_new_tokens"] = max_new_tokens_for(longest)
    return generation


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
    lap("model")
    modalities = TASK_MODALITIES[cfg["task"]["name"]]
    splits = ("train", "val", "test") if cfg.get("run_test", True) else ("train", "val")
    caches = prepare_feature_caches(cfg, model, corpus, splits)
    if caches:
        lap("feature cache")
    datamodule = AVSRDataModule(cfg["data"], corpus, modalities, seed=int(cfg["seed"]), feature_caches=caches,
                                limits=model.sample_limits())
    # Saved with the checkpoint, so that evaluation decodes with the limit training derived.
    cfg = {**cfg, "generation": fitted_generation(cfg["generation"], model, datamodule)}
    generation = GenerationSettings(**cfg["generation"])
    module = AVSRModule(model, OptimSettings(**dict(cfg["optim"])), generation, config=dict(cfg))

    trainer_cfg = {k: v for k, v in dict(cfg["trainer"]).items() if v is not None}
    trainer_cfg["precision"] = _precision(cfg["trainer"])
    trainer_cfg["strategy"] = build_strategy(cfg)
    resume_from = resolve_resume_checkpoint(cfg.get("ckpt_path"), output_dir / "checkpoints")
    loggers = _loggers(cfg, output_dir)
    trainer = L.Trainer(
        **trainer_cfg,
        default_root_dir=output_dir,
        logger=loggers,
        # The learning-rate monitor needs a logger (wandb may be missing, CSV off).
        callbacks=_callbacks(cfg, output_dir) + ([LearningRateMonitor(logging_interval="step")] if loggers else []),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # FrameBudgetBatchSampler shards by rank itself
    )
    check_gradient_coverage(module, datamodule, trainer.num_devices * trainer.num_nodes)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    lap("training")

    result = {"output_dir": str(output_dir), "checkpoint_dir": str(output_dir / "checkpoints")}
    test = None
    if cfg.get("run_test", True):
        # Every process decodes the test shard its sampler gives it, on its own device (Lightning's
        # teardown after fit left the model on the CPU); each gets the WER of the whole split.
        module.model.to(trainer.strategy.root_device)
        test = evaluate_loader(module.model, datamodule.test_dataloader(), generation, output_dir / "eval", "test")
        lap("test decode")
    if not trainer.is_global_zero:
        return result
    checkpoint_cb = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    result["last_checkpoint"] = checkpoint_cb.last_model_path
    k = int(cfg["checkpoint"]["average_last_k"])
    if k > 1:
        epochs = sorted(checkpoint_cb.best_k_models, key=lambda p: checkpoint_cb.best_k_models[p])[-k:]
        result["averaged_checkpoint"] = str(average_checkpoints(epochs, output_dir / "checkpoints" / "averaged.ckpt"))
    if test is not None:
        result["test_wer"] = test.wer
        result["test_summary"] = test.summary()
    result["skipped_samples"] = datamodule.skipped_samples()
    result["seconds"] = seconds
    result["minutes"] = sum(seconds.values()) / 60
    return result
