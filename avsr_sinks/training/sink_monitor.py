"""Live sink monitoring: every N training steps, the headline sink numbers on a fixed probe batch."""

from __future__ import annotations

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from avsr_sinks.sinks.detection import SinkRule
from avsr_sinks.sinks.summary import sink_summary


class SinkMonitor(L.Callback):
    """Logs ``sinks/bos_alpha``, ``sinks/intermediate_alpha``, ``sinks/max_activation_ratio`` and
    ``sinks/mean_bos_cosine`` every ``every_n_steps`` optimizer steps.

    The probe is the first non-empty validation batch (kept on first use), or ``probe_batch`` if given.
    It runs off the training step, under ``torch.no_grad`` in eval mode; train mode is restored.
    Relies on ``pl_module.model.assemble(batch)`` (inputs_embeds, attention_mask, position_ids,
    token_labels) and ``pl_module.model.llm`` (the Hugging Face causal LM).
    """

    def __init__(self, every_n_steps: int = 500, sample: int = 0, rule: SinkRule = SinkRule(), probe_batch=None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"SinkMonitor every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps, self.sample, self.rule, self.probe_batch = every_n_steps, sample, rule, probe_batch
        self._last_logged_step = 0  # with gradient accumulation several batches share one step

    def _first_validation_batch(self, trainer):
        if self.probe_batch is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            if loader is None:
                raise RuntimeError("SinkMonitor needs a validation dataloader or an explicit probe_batch")
            self.probe_batch = next(batch for batch in loader if batch["ids"])
        return self.probe_batch

    def measure(self, pl_module) -> dict:
        """The summary numbers on the probe batch (eval mode, no grad; train mode restored)."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                batch = move_data_to_device(self.probe_batch, next(pl_module.parameters()).device)
                sequence = pl_module.model.assemble(batch)
                summary = sink_summary(pl_module.model.llm, attention_mask=sequence.attention_mask,
                                       token_labels=sequence.token_labels, sample=self.sample, rule=self.rule,
                                       inputs_embeds=sequence.inputs_embeds, position_ids=sequence.position_ids)
        finally:
            pl_module.train(was_training)
        return {f"sinks/{key}": summary[key] for key in
                ("bos_alpha", "intermediate_alpha", "max_activation_ratio", "mean_bos_cosine")}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._last_logged_step or step % self.every_n_steps:
            return
        self._last_logged_step = step
        self._first_validation_batch(trainer)
        for name, value in self.measure(pl_module).items():
            pl_module.log(name, value, on_step=True, on_epoch=False)
