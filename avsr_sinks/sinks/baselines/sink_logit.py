"""A trainable per-head sink logit (as in gpt-oss), trained at fine-tuning time with LoRA.

Each query head h gets one learnable logit s_h that joins the softmax as an extra column whose
value is zero, so the attention output becomes ``sum_j exp(l_j) v_j / (sum_j exp(l_j) + exp(s_h))``:
a head can put weight on "nothing" instead of on a sink token.

It stays on SDPA (flash / memory-efficient kernels, no materialised attention map): the extra
column is a virtual key placed before the real ones. Queries get extra dimensions
``[s_h / scale, 0, ...]``, real keys ``[0, ...]`` and the virtual key ``[0, ..., 1, 0, ...]``
(zero in the real dimensions), so with SDPA's ``scale`` set explicitly to the model's, every
real logit is unchanged and the virtual key's logit is exactly s_h; its value vector is zero.
The per-head logit rides on the query, so grouped-query heads sharing a key still get their own
sink. The extra dimensions round the head dim up to a multiple of 8 (what fused kernels want).
Plain causal attention keeps a mask-free kernel through ``causal_lower_right`` (the virtual key
is visible to every query); padded batches add an always-visible column to the mask. The exact
alternative, rescaling the SDPA output by ``sigmoid(lse - s_h)``, needs the log-sum-exp, which
``scaled_dot_product_attention`` does not return.

Initialisation: ``s_h = -20`` makes the extra softmax weight ``exp(-20 - lse) <= 2e-9 * exp(-lse)``,
a no-op to well below 1e-6 while the gradient ``d out / d s_h`` is small but not zero. That
gradient scales with ``exp(s_h)`` and is far below AdamW's default eps, so training puts the
logits in their own AdamW group with a tiny eps and their own learning rate
(``avsr_sinks.training.module.parameter_groups``, ``optim.sink_logit_lr``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention.bias import causal_lower_right
from transformers.models.llama.modeling_llama import repeat_kv

from .attention_override import AttentionOverride, attention_modules, visible_keys

MODULE_NAME = "sink_logit"
DEFAULT_INIT = -20.0


class SinkLogits(nn.Module):
    """One learnable sink logit per query head; calling it returns them, ``[num_heads]``."""

    def __init__(self, num_heads: int, init: float = DEFAULT_INIT) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.full((num_heads,), float(init)))

    def forward(self) -> torch.Tensor:
        return self.logit


def sink_logit_attention(
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
) -> tuple[torch.Tensor, None]:
    """Attention function for the transformers interface: SDPA with the module's sink logits
    as an extra softmax column (see the module docstring). ``base_function`` is unused: every
    layer carries a sink."""
    batch, heads, q_len, head_dim = query.shape
    sink = getattr(module, MODULE_NAME)().to(query.dtype)
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    if attention_mask is None and q_len > 1:
        # Keys past the queries are empty cache slots, as in transformers' SDPA path.
        key, value = key[:, :, :q_len], value[:, :, :q_len]
        mask = causal_lower_right(q_len, q_len + 1)
    elif attention_mask is None:
        mask = None
    else:
        visible = visible_keys(attention_mask, q_len, key.shape[2], query.device)
        mask = torch.cat([torch.ones_like(visible[..., :1]), visible], dim=-1)

    extra = 8 - head_dim % 8
    sink_column = (sink / scaling)[None, :, None, None].expand(batch, heads, q_len, 1)
    query = torch.cat([query, sink_column, query.new_zeros(batch, heads, q_len, extra - 1)], dim=-1)
    virtual_key = query.new_zeros(batch, heads, 1, head_dim + extra)
    virtual_key[..., head_dim] = 1
    key = torch.cat([virtual_key, torch.cat([key, key.new_zeros(*key.shape[:3], extra)], dim=-1)], dim=2)
    value = torch.cat([value.new_zeros(batch, heads, 1, value.shape[-1]), value], dim=2)
    if torch.is_autocast_enabled(query.device.type):
        # Under autocast the rotary embedding leaves q and k in float32 and v in bf16; SDPA would
        # cast them itself, but a causal_lower_right mask dispatches before autocast does.
        dtype = torch.get_autocast_dtype(query.device.type)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    output = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout if module.training else 0.0, scale=scaling
    )
    return output.transpose(1, 2).contiguous(), None


class SinkLogitHandle:
    """Result of :func:`apply_sink_logits`: the new modules, and ``remove()`` to undo."""

    def __init__(self, override: AttentionOverride, modules: list[nn.Module]) -> None:
        self._override, self._modules = override, modules
        self.sink_logits = [getattr(m, MODULE_NAME) for m in modules]

    def remove(self) -> None:
        """Delete the sink logits and restore the original attention implementation."""
        for module in self._modules:
            delattr(module, MODULE_NAME)
        self._override.remove()


def apply_sink_logits(model: nn.Module, init: float = DEFAULT_INIT) -> SinkLogitHandle:
    """Give every attention layer of ``model`` trainable per-head sink logits, in place.

    Each ``self_attn`` gets a ``sink_logit`` submodule (state-dict keys
    ``...self_attn.sink_logit.logit``), created trainable in float32 (a bf16 logit near -20
    could not move by small steps) on the layer's device. Supported order with peft: after ``get_peft_model`` (peft freezes every
    parameter it finds that is not an adapter). The model must run 'sdpa' or 'eager' attention;
    the sink runs on SDPA in both cases.
    """
    modules = attention_modules(model)
    if any(hasattr(m, MODULE_NAME) for m in modules):
        raise ValueError("the model already has sink logits; call remove() on their handle first")
    override = AttentionOverride(model, "sink_logit", sink_logit_attention, supported=("sdpa", "eager"))
    for module in modules:
        device = next(module.parameters()).device
        sink = SinkLogits(module.config.num_attention_heads, init).to(device)
        module.add_module(MODULE_NAME, sink)
    return SinkLogitHandle(override, modules)
