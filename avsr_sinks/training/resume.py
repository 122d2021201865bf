"""Exact resume: atomic checkpoint files, every rank's RNG states, and finding the checkpoint to resume.

With the resumable training loader (``avsr_sinks.data.batching.ResumableDataLoader``), samples
seeded per (seed, epoch, index) and these parts, a run resumed from a step checkpoint continues
at the next batch with the same data, noise, augmentation and dropout as the uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the same folder, flushes it to disk and renames it
    over the target: a crash while writing (kill -9, a full disk) leaves the previous file whole.

    Lightning's own writer goes through an fsspec transaction whose temporary file lives in the
    system temp folder; moving it into a checkpoint folder on another file system is a copy,
    which a crash can cut short. Local paths only.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not a *.ckpt name: an interrupted write is never taken for a checkpoint.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)  # left only when the write failed before the rename
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself reaches the disk
        finally:
            os.close(folder)


def _plain_rng_states() -> dict:
    """This process's torch (CPU, CUDA), numpy and python RNG states as tensors, lists and tuples
    (what ``torch.load(weights_only=True)`` reads back; numpy arrays are not)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": (kind, keys.tolist(), position, has_gauss, cached),
              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_plain_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])


class RandomStateCheckpoint(L.Callback):
    """Saves every rank's RNG states in each checkpoint and restores each rank's own when training
    resumes, so that dropout continues as in the uninterrupted run.

    Saved when the checkpoint is taken (every rank takes part in writing one, so the states are
    gathered there) and set again at the start of the resumed training, after every setup step
    that might draw. The data pipeline draws nothing from these generators (see the module
    docstring), so nothing else is needed for the data to continue exactly.
    """

    def __init__(self) -> None:
        self._to_restore: list[dict] | None = None

    def state_dict(self) -> dict:
        states = _plain_rng_states()
        if dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
            return {"per_rank": gathered}
        return {"per_rank": [states]}

    def load_state_dict(self, state_dict: dict) -> None:
        self._to_restore = state_dict["per_rank"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is None:
            return
        if len(self._to_restore) != trainer.world_size:
            raise ValueError(f"the checkpoint holds the random states of {len(self._to_restore)} processes, this run has "
                             f"{trainer.world_size}: resume with the same trainer.devices x trainer.num_nodes")
        _set_plain_rng_states(self._to_restore[trainer.global_rank])
        self._to_restore = None


def readable_checkpoint_error(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (unreadable, truncated, or without training state); None if it can."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # a truncated zip, a pickle that needs code, ...
        return f"{type(err).__name__}: {err}"
    if "loops" not in checkpoint:
        return "it holds no training state (an averaged or exported checkpoint, for evaluation only)"
    return None


def newest_resumable_checkpoint(folder: Path) -> Path | None:
    """The most recently written checkpoint in ``folder`` that reads and holds training state."""
    candidates = sorted(folder.glob(f"*{CHECKPOINT_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    for candidate in candidates:
        problem = readable_checkpoint_error(candidate)
        if problem is None:
            return candidate
        log.warning("skipping checkpoint %s: %s", candidate, problem)
    return None


def resolve_resume_checkpoint(ckpt_path, run_checkpoints: Path) -> str | None:
    """The checkpoint file ``trainer.fit`` resumes from, for the config's ``ckpt_path``:

    - ``null``: none (a fresh run);
    - ``last``: the newest resumable checkpoint of this run (``run_checkpoints``), or none when the
      run has none yet: rerunning the same command with ``ckpt_path=last`` continues an interrupted run;
    - a run folder (or its ``checkpoints`` folder): its newest resumable checkpoint;
    - a file: that file, which must read; if it does not, the error names it and the newest good one.
    """
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        found = newest_resumable_checkpoint(run_checkpoints)
        log.info("ckpt_path=last: %s", f"resuming from {found}" if found else f"no checkpoint in {run_checkpoints}, starting afresh")
        return str(found) if found else None
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = newest_resumable_checkpoint(folder)
        if found is None:
            raise FileNotFoundError(f"ckpt_path={ckpt_path}: no resumable checkpoint in {folder}")
        return str(found)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    problem = readable_checkpoint_error(path)
    if problem is not None:
        newest = newest_resumable_checkpoint(path.parent)
        hint = f"the newest good checkpoint there is {newest} (or pass ckpt_path=last)" if newest else f"no good checkpoint is left in {path.parent}"
        raise ValueError(f"cannot resume from checkpoint {path}: {problem}; {hint}")
    return str(path)
