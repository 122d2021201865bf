"""Attention-sink scores (paper Eq. 5) from each layer's queries and keys, in query chunks.

alpha_i^l = 1 / (H * |{valid k >= i}|) * sum_h sum_{valid k >= i} A_h^l[k, i]

A forward pre-hook on every attention module receives the layer's normed hidden states and the
model's own rotary (cos, sin) for its position_ids; it recomputes q and k with the module's
q_proj/k_proj (so LoRA is included), and accumulates column sums of the softmax one chunk of
queries at a time. Peak extra memory is heads x chunk x N, never layers x heads x N^2.
A layer with trainable sink logits (``baselines.apply_sink_logits``) gets its extra softmax
column too, so alpha is the attention the tokens really receive.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from .baselines.sink_logit import MODULE_NAME as SINK_LOGIT_MODULE
from .hooks import decoder_layers, forward_with_hooks


def _column_sums(module: nn.Module, hidden: torch.Tensor, cos_sin, valid: torch.Tensor, query_chunk: int) -> torch.Tensor:
    """Sum over valid queries of the attention each key receives, per head: ``[B, H, N]``."""
    batch, length, _ = hidden.shape
    head_dim = module.head_dim
    q = module.q_proj(hidden).view(batch, length, -1, head_dim).transpose(1, 2)
    k = module.k_proj(hidden).view(batch, length, -1, head_dim).transpose(1, 2)
    cos, sin = cos_sin
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    q, k = q.float(), k.float()
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # grouped-query attention
    positions = torch.arange(length, device=hidden.device)
    sinks = getattr(module, SINK_LOGIT_MODULE, None)
    sums = torch.zeros(batch, q.shape[1], length, device=hidden.device)
    for start in range(0, length, query_chunk):
        stop = min(start + query_chunk, length)
        scores = q[:, :, start:stop] @ k.transpose(-1, -2) * module.scaling  # [B, H, c, N]
        allowed = (positions[None, :] <= positions[start:stop, None])[None] & valid[:, None, :]  # [B, c, N]
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        if sinks is not None:  # the sink logit's column takes its share, then is dropped
            column = sinks().float()[None, :, None, None].expand(batch, -1, stop - start, 1)
            scores = torch.cat([scores, column], dim=-1)
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)[..., :length]  # fully masked rows -> 0
        weights = weights * valid[:, None, start:stop, None]  # padded queries do not count
        sums += weights.sum(dim=2)
    return sums


def attention_sink_scores(
    model: nn.Module,
    attention_mask: torch.Tensor | None = None,
    per_head: bool = False,
    query_chunk: int = 256,
    **forward_inputs,
) -> torch.Tensor:
    """Eq. 5 sink score of every token at every layer.

    Runs ``model(attention_mask=..., **forward_inputs)`` once (any attention implementation)
    under ``torch.no_grad``. ``forward_inputs`` holds ``input_ids`` or ``inputs_embeds`` and
    optionally ``position_ids``. Padding (left or right) is excluded as key and as query.

    Returns ``[L, B, N]`` (``[L, B, H, N]`` with ``per_head``), float32; padded positions are 0.
    """
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be >= 1, got {query_chunk}")
    layers = decoder_layers(model)
    results: dict[int, torch.Tensor] = {}
    handles = []
    valid_given = None if attention_mask is None else attention_mask.bool()

    def hook_for(index: int):
        def hook(module, args, kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            cos_sin = kwargs.get("position_embeddings")
            if cos_sin is None:
                raise RuntimeError(f"layer {index}: attention received no position_embeddings; a Llama-family model is required")
            valid = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device) if valid_given is None \
                else valid_given.to(hidden.device)
            results[index] = _column_sums(module, hidden, cos_sin, valid, query_chunk)

        return hook

    for index, layer in enumerate(layers):
        handles.append(layer.self_attn.register_forward_pre_hook(hook_for(index), with_kwargs=True))
    forward_with_hooks(model, handles, attention_mask=attention_mask, **forward_inputs)

    sums = torch.stack([results[i] for i in range(len(layers))])  # [L, B, H, N]
    batch, length = sums.shape[1], sums.shape[3]
    valid = torch.ones(batch, length, dtype=torch.bool) if valid_given is None else valid_given
    valid = valid.to(sums.device)
    # Number of valid queries at or after each position (the queries that can see it).
    seen_by = valid.flip(-1).cumsum(-1).flip(-1).float() * valid
    alpha = sums / seen_by.clamp(min=1)[None, :, None, :]
    return alpha if per_head else alpha.mean(dim=2)
