"""Training wall time that survives a resume: ``train/minutes`` in the run's logs.

A run that a session's end killed and ``resume=`` continued is timed as if it had run once: the
checkpoint carries the minutes spent up to it, and the resumed process adds its own. The steps
retrained past the last checkpoint are counted once (the lost minutes are not a cost of the
recipe). Validation inside ``fit`` counts: it is part of what training the run took.
"""

from __future__ import annotations

import time

import lightning as L


class TrainingClock(L.Callback):
    def __init__(self) -> None:
        self._before = 0.0  # seconds of the checkpoint this run resumed from
        self._started: float | None = None

    def seconds(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._before + running

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.log("train/minutes", self.seconds() / 60, on_step=True, on_epoch=False, rank_zero_only=True)

    def state_dict(self) -> dict:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._before = float(state_dict["seconds"])
