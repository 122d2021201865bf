"""The residual stream after every decoder layer, collected with hooks in one no-grad pass."""

from __future__ import annotations

import torch
from torch import nn

from .hooks import HiddenStateCollector, decoder_layers


def residual_streams(model: nn.Module, **forward_inputs) -> torch.Tensor:
    """``[L, B, N, D]``: the output of each decoder layer for ``model(**forward_inputs)``."""
    collector = HiddenStateCollector(model, range(len(decoder_layers(model))))
    with torch.no_grad(), collector:
        model(**forward_inputs)
    return collector.stacked()
