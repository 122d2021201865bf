"""Massive activations (paper Eq. 6): Theta_i^l = {j : |H^l[i, j]| >= tau * median |H^l|}.

The median is over all valid tokens and all features of the layer (padding excluded).
"""

from __future__ import annotations

import torch


def valid_mask(attention_mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
    """``[B, N]`` bool mask of real tokens (all true without a mask)."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    return attention_mask.bool()


def massive_activations(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        tau: float = 1e3, top_k: int = 5) -> dict:
    """Eq. 6 on residual streams ``[L, B, N, D]``.

    Returns ``median`` ``[L]``, ``massive`` bool ``[L, B, N, D]`` (the sets Theta_i^l),
    ``top_values`` / ``top_ratio`` ``[L, k]`` (largest |H| of the layer and over the median) and
    ``top_where`` ``[L, k, 3]`` (sample, token, feature of each).
    """
    magnitude = hidden_states.detach().float().abs()
    layers, batch, length, _ = magnitude.shape
    valid = valid_mask(attention_mask, batch, length).to(magnitude.device)
    medians = torch.stack([magnitude[l][valid].median() for l in range(layers)])
    massive = (magnitude >= tau * medians[:, None, None, None]) & valid[None, :, :, None]
    flat = (magnitude * valid[None, :, :, None]).flatten(1)
    top_values, top_index = flat.topk(min(top_k, flat.shape[1]), dim=1)
    top_where = torch.stack(torch.unravel_index(top_index, magnitude.shape[1:]), dim=-1)
    return {"median": medians, "massive": massive, "top_values": top_values,
            "top_ratio": top_values / medians[:, None], "top_where": top_where}
