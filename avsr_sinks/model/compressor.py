"""Temporal compression of encoder features before the projector.

``avg-pool`` (the paper): mean of each window of ``rate`` frames. ``stack`` (the reference's
other mode): the ``rate`` frames of a window concatenated, so the width grows by ``rate``.
Both work per sample on valid frames only: a sample of length T gives ceil(T / rate) tokens,
and the last, partial window averages (or stacks, zero-filled) its real frames only, so a
sample's tokens do not depend on how much padding its batch has.
"""

from __future__ import annotations

import torch
from torch import nn

from .tasks import COMPRESSOR_KINDS


def _windows(features: torch.Tensor, lengths: torch.Tensor, rate: int):
    """Reshape [B, T, D] into windows [B, T', rate, D] and their validity mask [B, T', rate]."""
    batch, frames, dim = features.shape
    out_frames = -(-frames // rate)
    pad = out_frames * rate - frames
    features = nn.functional.pad(features, (0, 0, 0, pad))
    valid = torch.arange(out_frames * rate, device=features.device)[None, :] < lengths[:, None]
    return features.view(batch, out_frames, rate, dim), valid.view(batch, out_frames, rate)


class _Compressor(nn.Module):
    def __init__(self, rate: int) -> None:
        super().__init__()
        if rate < 1:
            raise ValueError(f"compression rate must be >= 1, got {rate}")
        self.rate = rate


class AvgPoolCompressor(_Compressor):
    def output_dim(self, input_dim: int) -> int:
        return input_dim

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows, valid = _windows(features, lengths, self.rate)
        counts = valid.sum(dim=2, keepdim=True).clamp_min(1).to(features.dtype)
        pooled = (windows * valid.unsqueeze(-1)).sum(dim=2) / counts
        return pooled, -(-lengths // self.rate)


class StackCompressor(_Compressor):
    def output_dim(self, input_dim: int) -> int:
        return input_dim * self.rate

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows, valid = _windows(features, lengths, self.rate)
        stacked = (windows * valid.unsqueeze(-1)).flatten(start_dim=2)
        return stacked, -(-lengths // self.rate)


COMPRESSORS = dict(zip(COMPRESSOR_KINDS, (AvgPoolCompressor, StackCompressor)))


def build_compressor(kind: str, rate: int) -> nn.Module:
    if kind not in COMPRESSORS:
        raise ValueError(f"unknown compressor {kind!r}: choose one of {sorted(COMPRESSORS)} (config key model.compressor)")
    return COMPRESSORS[kind](rate)
