"""Rotating one token's hidden state (paper Eq. 8, 9) and measuring the model again.

At the output of decoder layer l, H[i] <- ||H[i]|| * H[f(i)] / ||H[f(i)]||: the state keeps its
norm and takes the direction of f(i). ``towards="bos"``: f(i) is the sample's BOS (first valid
position). ``towards="nearest"``: f(i) is the valid non-sink token whose state at layer l has
the highest cosine with H[i] (sinks given by the caller; BOS and i itself are never chosen).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .activations import massive_activations
from .attention_scores import attention_sink_scores
from .detection import first_valid_position
from .hooks import decoder_layers
from .streams import residual_streams


def rotation_target(states: torch.Tensor, position: int, towards: str, bos: int,
                    excluded: torch.Tensor) -> int:
    """Index f(i) for one sample's states ``[N, D]``; ``excluded`` ``[N]`` marks non-candidates."""
    if towards == "bos":
        return bos
    if towards != "nearest":
        raise ValueError(f"towards must be 'bos' or 'nearest', got {towards!r}")
    cosine = F.cosine_similarity(states.float(), states[position].float()[None], dim=-1)
    blocked = excluded.clone()
    blocked[[bos, position]] = True
    if blocked.all():
        raise ValueError("no non-sink token left to rotate towards")
    return int(cosine.masked_fill(blocked, float("-inf")).argmax())


@contextmanager
def rotated(model: nn.Module, layer: int, position: int, towards: str = "nearest", sample: int = 0,
            sinks: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None):
    """While active, every forward pass rotates ``H^layer[sample, position]`` (Eq. 8 or 9).

    ``sinks`` ``[N]`` bool marks the sample's sink tokens (excluded from ``nearest``); padding is
    excluded too. Yields a dict that receives ``target`` (the chosen f(i)) on each pass.
    """
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} out of range for a {len(layers)}-layer model")
    info: dict = {}

    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        length = hidden.shape[1]
        excluded = torch.zeros(length, dtype=torch.bool) if sinks is None else sinks.bool().clone()
        if attention_mask is not None:
            excluded |= ~attention_mask[sample].bool()
        bos = int(first_valid_position(attention_mask, hidden.shape[0], length)[sample])
        target = rotation_target(hidden[sample], position, towards, bos, excluded)
        info["target"] = target
        hidden = hidden.clone()
        source = hidden[sample, position]
        hidden[sample, position] = source.norm() * hidden[sample, target] / hidden[sample, target].norm()
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = layers[layer].register_forward_hook(hook)
    try:
        yield info
    finally:
        handle.remove()


def _measure(model, attention_mask, sample, position, tau, **forward_inputs) -> dict:
    alpha = attention_sink_scores(model, attention_mask=attention_mask, **forward_inputs)
    streams = residual_streams(model, attention_mask=attention_mask, **forward_inputs)
    massive = massive_activations(streams, attention_mask, tau=tau)
    ratio = streams[:, sample, position].float().abs().amax(-1) / massive["median"]
    return {"alpha": alpha[:, sample, position].tolist(),
            "max_ratio": ratio.tolist(),
            "massive_features": [massive["massive"][l, sample, position].nonzero().flatten().tolist()
                                 for l in range(streams.shape[0])]}


def rotation_effect(model: nn.Module, layer: int, position: int, towards: str = "nearest", sample: int = 0,
                    sinks: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    tau: float = 1e3, **forward_inputs) -> dict:
    """The token's alpha, max |H|/median and massive features per layer, before and after rotation.

    Returns ``{"before": {...}, "after": {...}, "target": f(i), "layer", "position", "towards"}``;
    each side holds per-layer lists ``alpha``, ``max_ratio``, ``massive_features``.
    """
    before = _measure(model, attention_mask, sample, position, tau, **forward_inputs)
    with rotated(model, layer, position, towards, sample, sinks, attention_mask) as info:
        after = _measure(model, attention_mask, sample, position, tau, **forward_inputs)
    return {"layer": layer, "position": position, "towards": towards, "target": info["target"],
            "before": before, "after": after}
