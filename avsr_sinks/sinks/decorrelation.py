"""The decorrelation loss (paper Eq. 10): mean squared cosine between each token and BOS.

``L_decor = mean over layers l in S and tokens i in T of cos(H^l[i], H^l[0])^2``

- ``S`` is chosen by the caller (the model hooks those layers only);
- ``T`` is every valid token after BOS (the paper), optionally restricted by ``token_mask``
  (the reference code uses the input prefix only);
- BOS is the first valid position of each sample, so left and right padding both work;
- padding never counts; the cosine is computed in fp32 with an ``eps`` so bf16 training and
  zero vectors are safe.

Averaging: per sample over its (layer, token) pairs as in Eq. 10, then over the samples that
have at least one token in ``T``; a batch where no sample has one gives 0 (with a gradient path).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def first_valid_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first non-padding position per sample (BOS under left or right padding)."""
    return attention_mask.long().argmax(dim=1)


def decorrelation_loss(
    hidden_states: torch.Tensor | Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    token_mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Eq. 10 over the given layers.

    Args:
        hidden_states: ``[S, B, N, D]`` (or a sequence of ``[B, N, D]``), the residual stream
            after each layer in S.
        attention_mask: ``[B, N]``, 1 for real tokens, 0 for padding.
        token_mask: optional ``[B, N]`` bool, the tokens allowed in T (e.g. the input prefix).
            BOS and padding are always excluded.
        eps: floor of the product of norms in the cosine.
    Returns:
        A scalar tensor (fp32).
    """
    if not isinstance(hidden_states, torch.Tensor):
        hidden_states = torch.stack(list(hidden_states))
    if hidden_states.dim() != 4:
        raise ValueError(f"hidden_states must be [layers, batch, tokens, dim], got {tuple(hidden_states.shape)}")
    _, batch, tokens, _ = hidden_states.shape
    if attention_mask.shape != (batch, tokens):
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} does not match hidden states [{batch}, {tokens}]")

    states = hidden_states.float()
    bos = first_valid_positions(attention_mask)
    bos_states = states[:, torch.arange(batch, device=states.device), bos]  # [S, B, D]
    dots = torch.einsum("sbnd,sbd->sbn", states, bos_states)
    norms = states.norm(dim=-1) * bos_states.norm(dim=-1).unsqueeze(-1)
    cos_sq = (dots / norms.clamp_min(eps)) ** 2  # [S, B, N]

    in_t = attention_mask.bool().clone()
    in_t[torch.arange(batch, device=in_t.device), bos] = False
    if token_mask is not None:
        in_t &= token_mask.bool()
    counts = in_t.sum(dim=1)  # tokens in T per sample
    per_sample = (cos_sq * in_t).sum(dim=(0, 2)) / (counts.clamp_min(1) * states.shape[0])
    has_tokens = counts > 0
    if not has_tokens.any():
        return cos_sq.sum() * 0.0
    return per_sample[has_tokens].mean()
