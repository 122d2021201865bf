"""Projectors from compressed encoder features to the LLM width."""

from __future__ import annotations

from torch import nn


def build_projector(kind: str, input_dim: int, output_dim: int, hidden_dim: int | None = None, layer_norm: bool = False) -> nn.Module:
    """``mlp``: Linear-ReLU-Linear (the reference's projector); ``linear``: one Linear.

    ``layer_norm`` appends a LayerNorm over the LLM width.
    """
    if kind == "mlp":
        hidden_dim = hidden_dim or output_dim
        layers: list[nn.Module] = [nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim)]
    elif kind == "linear":
        layers = [nn.Linear(input_dim, output_dim)]
    else:
        raise ValueError(f"unknown projector {kind!r}: choose 'mlp' or 'linear' (config key model.projector.kind)")
    if layer_norm:
        layers.append(nn.LayerNorm(output_dim))
    return nn.Sequential(*layers)
