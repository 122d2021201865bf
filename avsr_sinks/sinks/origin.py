"""Where massive activations come from (paper Section 3.2).

Per layer: the size of what the attention block and the MLP block add to the residual stream,
at sink and at non-sink tokens; inside the GLU (down(act(h W_gate) * h W_up)), the sign and size
of the gate pre-activation h W_gate, and the intermediate features of act(h W_gate) * h W_up that
are largest at sink tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from .hooks import decoder_layers, forward_with_hooks


def _mean_over(values: torch.Tensor, where: torch.Tensor) -> float:
    """Mean of ``values [B, N]`` at the true positions of ``where`` (nan when there are none)."""
    return values[where].mean().item() if where.any() else float("nan")


def residual_contributions(model: nn.Module, sinks: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           top_k: int = 3, **forward_inputs) -> list[dict]:
    """Per layer, contributions to the residual stream at sink vs non-sink tokens.

    ``sinks`` is a bool ``[B, N]`` (the same tokens at every layer) or ``[L, B, N]`` (per layer);
    padding is never counted. Each row holds ``attn_norm_sink``/``attn_norm_other`` and
    ``mlp_norm_sink``/``mlp_norm_other`` (mean L2 norm of the block outputs),
    ``gate_sink``/``gate_other`` (mean of h W_gate over intermediate features),
    ``gate_positive_sink``/``gate_positive_other`` (fraction of h W_gate > 0), and
    ``top_glu_features`` / ``top_glu_values`` (intermediate features of act(h W_gate) * h W_up
    with the largest mean magnitude at sink tokens).
    """
    layers = decoder_layers(model)
    captured: dict[tuple[int, str], torch.Tensor] = {}

    def keep(index: int, name: str):
        def hook(_module, _args, output):
            captured[(index, name)] = (output[0] if isinstance(output, tuple) else output).detach().float()

        return hook

    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.self_attn.register_forward_hook(keep(index, "attn")))
        handles.append(layer.mlp.register_forward_hook(keep(index, "mlp")))
        handles.append(layer.mlp.gate_proj.register_forward_hook(keep(index, "gate")))
        handles.append(layer.mlp.up_proj.register_forward_hook(keep(index, "up")))
    forward_with_hooks(model, handles, attention_mask=attention_mask, **forward_inputs)

    batch, length = captured[(0, "attn")].shape[:2]
    valid = torch.ones(batch, length, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    per_layer = sinks.bool() if sinks.dim() == 3 else sinks.bool()[None].expand(len(layers), -1, -1)
    rows = []
    for index, layer in enumerate(layers):
        sink, other = per_layer[index] & valid, ~per_layer[index] & valid
        gate, up = captured[(index, "gate")], captured[(index, "up")]
        glu = layer.mlp.act_fn(gate) * up  # [B, N, I]
        glu_at_sinks = glu[sink].abs().mean(0) if sink.any() else torch.zeros(glu.shape[-1])
        top_values, top_features = glu_at_sinks.topk(min(top_k, glu.shape[-1]))
        rows.append({
            "layer": index,
            "attn_norm_sink": _mean_over(captured[(index, "attn")].norm(dim=-1), sink),
            "attn_norm_other": _mean_over(captured[(index, "attn")].norm(dim=-1), other),
            "mlp_norm_sink": _mean_over(captured[(index, "mlp")].norm(dim=-1), sink),
            "mlp_norm_other": _mean_over(captured[(index, "mlp")].norm(dim=-1), other),
            "gate_sink": _mean_over(gate.mean(-1), sink),
            "gate_other": _mean_over(gate.mean(-1), other),
            "gate_positive_sink": _mean_over((gate > 0).float().mean(-1), sink),
            "gate_positive_other": _mean_over((gate > 0).float().mean(-1), other),
            "top_glu_features": top_features.tolist(),
            "top_glu_values": top_values.tolist(),
        })
    return rows
