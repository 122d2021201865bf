"""The LightningModule: a thin wrapper that calls LlamaAVSR for losses and transcripts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import lightning as L
import torch

from ..evaluation.wer import corpus_wer
from ..model.added_tokens import upgrade_peft_token_keys
from ..model.avsr import GenerationSettings, LlamaAVSR
from ..sinks.baselines.sink_logit import MODULE_NAME as SINK_LOGIT_MODULE
from .schedule import staged_warmup_cosine


@dataclass
class OptimSettings:
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    # Learning rates of trainable encoders by modality, e.g. {"video": 1e-3}; the others use ``lr``.
    # An encoder trained from scratch through the LLM can need less than LoRA and the projectors
    # (the demo's AV-HuBERT ResNet loses its features at 3e-3; its Whisper does not).
    encoder_lr: dict[str, float] | None = None
    # Learning rate of the trainable sink logits (baseline.kind=sink_logit); None = ``lr``. A logit
    # moves about one lr per step, and it matters only once it nears the attention logits' scale.
    sink_logit_lr: float | None = None


# AdamW's eps for the trainable sink logits. They start near a no-op, where their gradient
# (~ the softmax weight exp(s_h - lse), 1e-10 and less beside a pretrained model's sinks) is far
# below the default eps of 1e-8, which would scale their steps down to nothing; with this eps
# Adam's step stays lr-sized whatever the gradient's scale.
SINK_LOGIT_EPS = 1e-30


def parameter_groups(model: torch.nn.Module, optim: OptimSettings) -> list[dict]:
    """AdamW groups of the trainable parameters: weight decay on matrices only, each encoder's
    own learning rate where ``optim.encoder_lr`` sets one, and the sink logits (if any) with
    ``optim.sink_logit_lr`` and ``SINK_LOGIT_EPS``."""
    encoder_lr = dict(optim.encoder_lr or {})
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        parts = name.split(".")
        modality = parts[1] if parts[0] == "encoders" and parts[1] in encoder_lr else None
        sink_logit = SINK_LOGIT_MODULE in parts
        key = (modality, parameter.dim() >= 2, sink_logit)
        if key not in groups:
            groups[key] = {"params": [], "lr": float(encoder_lr[modality]) if modality else optim.lr,
                           "weight_decay": optim.weight_decay if key[1] else 0.0}
            if sink_logit:
                groups[key].update(eps=SINK_LOGIT_EPS, lr=float(optim.sink_logit_lr or optim.lr))
        groups[key]["params"].append(parameter)
    return list(groups.values())


class AVSRModule(L.LightningModule):
    """Training: CE (+ λ · decorrelation); validation: loss and WER on a few batches.

    Checkpoints hold only the parameters that train (LoRA, projectors, new embedding rows,
    and encoders where they are trainable), plus Lightning's resume state; the frozen base
    weights are reloaded from their original files. ``config`` (the resolved run config) is
    saved with them so that evaluation can rebuild the model.
    """

    def __init__(
        self,
        model: LlamaAVSR,
        optim: OptimSettings,
        generation: GenerationSettings,
        config: dict | None = None,
        val_generation_batches: int = 2,
    ) -> None:
        super().__init__()
        # Checkpoints hold the trainable subset only; the rest comes from the base weights.
        self.strict_loading = False
        self.model = model
        self.optim = optim
        self.generation = generation
        self.val_generation_batches = val_generation_batches
        self.save_hyperparameters({"config": config or {}})
        self._eval_outputs: list[tuple[list[str], list[str], list[str]]] = []
        self._trained_since_step = False  # a batch with samples since the last optimizer step

    def _log_losses(self, prefix: str, out, batch_size: int) -> None:
        on_step = prefix == "train"
        self.log(f"{prefix}/loss", out.loss, batch_size=batch_size, on_step=on_step, on_epoch=not on_step, prog_bar=True, sync_dist=not on_step)
        self.log(f"{prefix}/ce", out.ce, batch_size=batch_size, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        if on_step:
            for name, value in out.input_norms.items():
                self.log(f"train/input_norm_{name}", value, batch_size=batch_size, on_step=True)
        if out.ctc is not None:
            self.log(f"{prefix}/ctc", out.ctc, batch_size=batch_size, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        if out.decor is not None:
            self.log(f"{prefix}/decor", out.decor, batch_size=batch_size, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if not batch["ids"]:
            # Every sample of this rank's batch was skipped (bad files). The other ranks train on
            # theirs, and DDP's gradient all-reduce needs a backward from every rank (Lightning
            # refuses a skipped step under DDP): zero times every trainable parameter adds nothing.
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        self._trained_since_step = True
        if self.global_step < self.model.ctc_warmup_steps:
            return self._alignment_warmup_step(batch)
        out = self.model(batch)
        self._log_losses("train", out, len(batch["text"]))
        return out.loss

    def _alignment_warmup_step(self, batch: dict) -> torch.Tensor:
        """A step of the projector's CTC warm-up (model.projector.ctc_warmup_steps): the LLM does
        not run and LoRA gets no gradient, so AdamW leaves it as it is (a parameter without a
        gradient is skipped). DDP needs a gradient on every parameter: there, zero times the others."""
        ctc = self.model.alignment_loss(batch)
        size = len(batch["text"])
        self.log("train/loss", ctc, batch_size=size, on_step=True, prog_bar=True)
        self.log("train/ctc", ctc, batch_size=size, on_step=True)
        if self.trainer.world_size > 1:
            ctc = ctc + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return ctc

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Lightning's step, unless no rank had a sample since the last one: AdamW would still move
        the weights on zero gradients (momentum, decay). The closure (forward, backward) runs on
        every rank either way, and the ranks decide together."""
        loss = optimizer_closure()
        if self.trainer.strategy.reduce_boolean_decision(self._trained_since_step, all=False):
            optimizer.step(closure=lambda: loss)
        self._trained_since_step = False

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if not batch["ids"]:  # every sample skipped; validation has no per-step collective to keep in step
            return
        warmup = self.model.ctc_warmup_steps
        if warmup and self.global_step <= warmup:
            # The LLM has not trained yet (nor has it right at the warm-up's end): its loss and
            # decodes would say nothing, and an untrained reader's decodes run to the token limit
            # (minutes of the budget on a CPU).
            self.log("val/ctc", self.model.alignment_loss(batch), batch_size=len(batch["text"]), sync_dist=True)
            return
        out = self.model(batch)
        self._log_losses("val", out, len(batch["text"]))
        # The decoding budget counts batches of the whole split, whatever the number of processes:
        # this process's batch i is the split's batch i * R + rank (FrameBudgetBatchSampler).
        if batch_idx * self.trainer.world_size + self.global_rank < self.val_generation_batches:
            self._eval_outputs.append((batch["ids"], batch["text"], self.model.generate(batch, self.generation)))

    def on_validation_epoch_end(self) -> None:
        ids, refs, hyps = (sum((list(part[i]) for part in self._eval_outputs), []) for i in range(3))
        self._eval_outputs.clear()
        result = corpus_wer(ids, refs, hyps)
        # WER is a ratio of sums: errors and reference words add up over the processes before the
        # division (a mean of per-process WERs would weigh each shard alike). Every process takes
        # part, those that decoded nothing with zeros.
        errors = result.substitutions + result.deletions + result.insertions
        counts = self.all_gather(torch.tensor([errors, result.reference_words], device=self.device)).reshape(-1, 2).sum(dim=0)
        if counts[1] > 0:
            self.log("val/wer", float(counts[0] / counts[1]), prog_bar=True, rank_zero_only=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(parameter_groups(self.model, self.optim), lr=self.optim.lr,
                                      betas=tuple(self.optim.betas))
        total = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(staged_warmup_cosine, first_stage_steps=self.model.ctc_warmup_steps,
                               warmup_steps=self.optim.warmup_steps, total_steps=total, min_ratio=self.optim.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_model(self) -> None:
        """Shards the model under trainer.strategy=fsdp2 (the strategy gives the module a device mesh)."""
        if self._device_mesh is not None:
            from .sharding import shard_model

            shard_model(self.model, self._device_mesh["data_parallel"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming from a checkpoint written while peft trained the added token rows: its rows
        load as ``added_rows``. (FSDP2 loads the model before this hook: its strategy does it.)"""
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = upgrade_peft_token_keys(checkpoint["state_dict"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trained = {f"model.{key}" for key in self.model.trained_state_keys()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}
