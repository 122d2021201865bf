"""Frozen-encoder behaviour shared by Whisper and AV-HuBERT.

Pretrained encoders stay in eval mode (no dropout, no layerdrop) and get no gradients,
whatever mode the surrounding Lightning module is put in. Only tiny from-scratch demos
set ``trainable=True``. Adapters added later (LoRA through peft) keep their own
``requires_grad`` and still receive gradients, so the forward pass enables autograd
exactly when some parameter needs it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class FrozenEncoder(nn.Module):
    def __init__(self, trainable: bool = False) -> None:
        super().__init__()
        self.trainable = trainable

    def freeze_unless_trainable(self) -> None:
        """Call once the weights exist: fixes requires_grad and the mode."""
        if not self.trainable:
            self.requires_grad_(False)
            super().train(False)

    def train(self, mode: bool = True) -> "FrozenEncoder":
        # A frozen encoder ignores model.train(): dropout must stay off during fine-tuning.
        return super().train(mode and self.trainable)

    def grad_context(self) -> contextlib.AbstractContextManager:
        needs_grad = any(p.requires_grad for p in self.parameters())
        return contextlib.nullcontext() if needs_grad else torch.no_grad()
