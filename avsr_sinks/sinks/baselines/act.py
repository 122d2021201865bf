"""ACT, Attention Calibration (Yu et al. 2024, arXiv 2406.15765), applied at inference.

On chosen (layer, head) pairs the post-softmax map A (queries x keys) is recalibrated:

1. score each key by its mean attention over the queries that can see it,
   ``s_j = sum_i A[i, j] / #{i : i sees j}`` (``/(q_len - j)`` for an unpadded causal prefill);
2. sinks ``S = {j : s_j > threshold}``; the first of them (normally BOS) is kept as it is;
3. every other sink column is scaled by ``beta`` and each row frees ``r_i = (1 - beta) sum_{j in S} A[i, j]``;
4. ``r_i`` goes to the non-sink keys of row i in proportion to their weights, so rows still sum to 1.
   The kept first sink neither loses nor gains weight. A row with no non-sink weight to receive
   (e.g. a query that sees only sinks) is left unchanged.

Only the layers holding calibrated heads compute explicit attention weights; every other layer,
and decoding steps unless ``apply_during_decoding``, keep the model's SDPA (or eager) kernel.
A decoding step is a call with one query and a longer key cache; there the scores are that
query's own weights (each key is seen by one query).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.llama.modeling_llama import repeat_kv

from .attention_override import AttentionOverride, attention_modules, visible_keys

SETTINGS_ATTRIBUTE = "act_settings"


def act_recalibrate(weights: torch.Tensor, visible: torch.Tensor, beta: float = 0.4, threshold: float = 0.1) -> torch.Tensor:
    """ACT-recalibrated copy of post-softmax maps ``weights`` ``[..., q, kv]``.

    ``visible`` (boolean, broadcastable to ``weights``) marks the keys each query may see; it sets
    the number of queries each key's score is averaged over, and queries that see nothing do not
    count. Weights on hidden keys must be zero. Each map (all leading dims) is treated on its own.
    """
    visible = visible.expand_as(weights)
    viewers = visible.sum(-2)
    score = weights.sum(-2) / viewers.clamp_min(1)
    is_sink = score > threshold
    kept_first = is_sink & (is_sink.cumsum(-1) == 1)
    reduced = (is_sink & ~kept_first).unsqueeze(-2)
    receives = (~is_sink).unsqueeze(-2)
    freed = (1 - beta) * (weights * reduced).sum(-1, keepdim=True)
    receiver_mass = (weights * receives).sum(-1, keepdim=True)
    movable = receiver_mass > 0
    gain = 1 + freed / torch.where(movable, receiver_mass, torch.ones_like(receiver_mass))
    scale = torch.where(reduced & movable, torch.full_like(weights, beta), torch.ones_like(weights))
    scale = torch.where(receives & movable, gain, scale)
    return weights * scale


@dataclass(frozen=True)
class ActSettings:
    """What one attention module recalibrates: its head indices and the ACT constants."""

    heads: tuple[int, ...]
    beta: float
    threshold: float
    apply_during_decoding: bool


def act_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    base_function: Callable,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention function for the transformers interface: explicit weights with ACT on the
    module's listed heads, the base kernel everywhere else."""
    settings: ActSettings | None = getattr(module, SETTINGS_ATTRIBUTE, None)
    q_len, kv_len = query.shape[2], key.shape[2]
    decoding = q_len == 1 and kv_len > 1
    if settings is None or (decoding and not settings.apply_during_decoding):
        return base_function(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    visible = visible_keys(attention_mask, q_len, kv_len, query.device)
    logits = torch.matmul(query, key.transpose(2, 3)).float() * scaling
    logits = logits.masked_fill(~visible, torch.finfo(logits.dtype).min)
    # Zeroing hidden keys also empties rows that see nothing (left-padding queries).
    weights = torch.softmax(logits, dim=-1) * visible
    heads = list(settings.heads)
    weights[:, heads] = act_recalibrate(weights[:, heads], visible, settings.beta, settings.threshold)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training).to(value.dtype)
    output = torch.matmul(weights, value)
    return output.transpose(1, 2).contiguous(), weights


class ActHandle:
    """Undo for :func:`apply_act`: ``remove()`` restores the model's own attention."""

    def __init__(self, override: AttentionOverride, modules: list[nn.Module]) -> None:
        self._override, self._modules = override, modules

    def remove(self) -> None:
        """Drop the ACT settings and give back the original attention implementation."""
        for module in self._modules:
            delattr(module, SETTINGS_ATTRIBUTE)
        self._override.remove()


def apply_act(
    model: nn.Module,
    heads: Iterable[tuple[int, int]],
    beta: float = 0.4,
    threshold: float = 0.1,
    apply_during_decoding: bool = False,
) -> ActHandle:
    """Recalibrate attention of the given (layer, head) pairs (0-indexed) of ``model`` with ACT.

    Works on a plain, causal-LM or peft-wrapped Llama-family model running 'sdpa' or 'eager'
    attention. ``heads=[]`` leaves every output exactly as it was. Returns a handle whose
    ``remove()`` undoes the change.
    """
    modules = attention_modules(model)
    num_heads = modules[0].config.num_attention_heads
    per_layer: dict[int, set[int]] = {}
    for layer, head in heads:
        if not (0 <= layer < len(modules) and 0 <= head < num_heads):
            raise ValueError(f"ACT head ({layer}, {head}) is outside the model's {len(modules)} layers x {num_heads} heads")
        per_layer.setdefault(int(layer), set()).add(int(head))
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"ACT beta must lie in [0, 1] (the share a sink keeps), got {beta}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"ACT threshold must lie in (0, 1) (a mean attention weight), got {threshold}")
    override = AttentionOverride(model, "act", act_attention, supported=("sdpa", "eager"))
    calibrated = []
    for layer, layer_heads in per_layer.items():
        settings = ActSettings(tuple(sorted(layer_heads)), beta, threshold, apply_during_decoding)
        setattr(modules[layer], SETTINGS_ATTRIBUTE, settings)
        calibrated.append(modules[layer])
    return ActHandle(override, calibrated)
