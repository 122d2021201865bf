"""Cosine similarity with BOS (paper Eq. 7) and the pairwise cosine matrix of one layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .detection import first_valid_position


def bos_cosine_similarity(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """cos(H^l[i], H^l[BOS]) for ``[L, B, N, D]`` states -> ``[L, B, N]`` (fp32; padding is 0).

    BOS is the first valid position of each sample (left padding puts it after the pads).
    """
    states = hidden_states.detach().float()
    layers, batch, length, _ = states.shape
    bos = first_valid_position(attention_mask, batch, length).to(states.device)
    bos_states = states[:, torch.arange(batch), bos]  # [L, B, D]
    cosine = F.cosine_similarity(states, bos_states[:, :, None], dim=-1, eps=1e-8)
    if attention_mask is not None:
        cosine = cosine * attention_mask.bool().to(states.device)
    return cosine


def pairwise_cosine(states: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` cosine between every pair of token states ``[N, D]`` (fp32)."""
    unit = F.normalize(states.detach().float(), dim=-1, eps=1e-8)
    return unit @ unit.T
