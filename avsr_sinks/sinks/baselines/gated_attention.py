"""Gated attention (Qiu et al. 2025): a per-head sigmoid gate on the attention output.

For each token and query head, ``g = 2 * sigmoid(x W^T + b)`` is computed from the layer input
x (the normalised hidden state fed to attention) and multiplies that head's attention output
before ``o_proj``. With ``W = 0, b = 0`` the gate is exactly 1, so the model starts unchanged,
and the gradient reaching W is ``2 * sigmoid'(0) = 0.5`` times the usual one, not zero. The
factor 2 (range (0, 2) instead of the paper's (0, 1)) is what makes an open, exact-no-op start
possible; the gate can still close a head towards 0 (the paper's head-wise variant).

The gate is applied inside the attention function, so ``o_proj`` stays a plain module (LoRA
may wrap or merge it) and the model keeps its own kernel (SDPA or eager).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .attention_override import AttentionOverride, attention_modules

MODULE_NAME = "attn_gate"
INPUT_KWARG = "attn_gate_input"


class AttentionGate(nn.Module):
    """Head-wise gate ``2 * sigmoid(x W^T + b)``, ``[..., hidden] -> [..., num_heads]``, open at init."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, num_heads)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In the gate's own dtype, float32 unless the whole model was cast (bf16-true): the gate
        # stays exactly 1 at init and small updates register beside a bf16 base.
        return 2 * torch.sigmoid(self.proj(x.to(self.proj.weight.dtype)).float())


def gated_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    base_function: Callable,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention function for the transformers interface: the base kernel, then each head's
    output ``[B, q, H, d]`` times the module's gate of the layer input."""
    layer_input = kwargs.pop(INPUT_KWARG)
    output, weights = base_function(module, query, key, value, attention_mask, **kwargs)
    gate = getattr(module, MODULE_NAME)(layer_input)
    return (output * gate.unsqueeze(-1)).to(output.dtype), weights


def _pass_layer_input(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    return args, {**kwargs, INPUT_KWARG: hidden_states}


class GatedAttentionHandle:
    """Result of :func:`apply_gated_attention`: the new gates, and ``remove()`` to undo."""

    def __init__(self, override: AttentionOverride, modules: list[nn.Module], hooks: list) -> None:
        self._override, self._modules, self._hooks = override, modules, hooks
        self.gates = [getattr(m, MODULE_NAME) for m in modules]

    def remove(self) -> None:
        """Delete the gates and their hooks, and restore the original attention implementation."""
        for hook in self._hooks:
            hook.remove()
        for module in self._modules:
            delattr(module, MODULE_NAME)
        self._override.remove()


def apply_gated_attention(model: nn.Module) -> GatedAttentionHandle:
    """Add an open head-wise output gate to every attention layer of ``model``, in place.

    Each ``self_attn`` gets an ``attn_gate`` submodule (state-dict keys
    ``...self_attn.attn_gate.proj.{weight,bias}``, float32, trainable) and a forward pre-hook
    that hands the layer input to the gate. Supported order with peft: after ``get_peft_model``
    (peft freezes every parameter it finds that is not an adapter).
    """
    modules = attention_modules(model)
    if any(hasattr(m, MODULE_NAME) for m in modules):
        raise ValueError("the model already has attention gates; call remove() on their handle first")
    override = AttentionOverride(model, "gated", gated_attention, supported=("sdpa", "eager"))
    hooks = []
    for module in modules:
        config = module.config
        gate = AttentionGate(config.hidden_size, config.num_attention_heads).to(next(module.parameters()).device)
        module.add_module(MODULE_NAME, gate)
        hooks.append(module.register_forward_pre_hook(_pass_layer_input, with_kwargs=True))
    return GatedAttentionHandle(override, modules, hooks)
