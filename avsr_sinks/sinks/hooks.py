"""Finding the decoder layers of any Hugging Face Llama-family model, and hooking them.

Works on a bare ``LlamaForCausalLM``, on a peft-wrapped one and on its inner ``LlamaModel``.
Hidden states are taken with forward hooks on the chosen layers only, so training keeps
SDPA/flash attention and never materialises every layer's output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of decoder layers inside ``model`` (plain, causal-LM or peft)."""
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.ModuleList) and hasattr(module, "embed_tokens"):
            return layers
    raise ValueError(
        f"{type(model).__name__} has no Llama-style decoder (a module with `embed_tokens` and "
        "a `layers` ModuleList); pass a Hugging Face Llama-family model"
    )


class HiddenStateCollector:
    """Records the residual stream after each chosen decoder layer (0-indexed) while active.

    Use as a context manager around a forward pass; ``states[l]`` is ``[B, N, D]`` for each
    layer index ``l`` in ``layer_indices``. Gradients flow through the recorded tensors.
    """

    def __init__(self, model: nn.Module, layer_indices: Iterable[int]) -> None:
        self.layers = decoder_layers(model)
        self.layer_indices = sorted(set(layer_indices))
        bad = [i for i in self.layer_indices if not 0 <= i < len(self.layers)]
        if bad:
            raise ValueError(f"layer indices {bad} out of range for a {len(self.layers)}-layer model")
        self.states: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, index: int):
        def record(_module, _args, output):
            # transformers 5 decoder layers return a tensor; older ones a tuple.
            self.states[index] = output[0] if isinstance(output, tuple) else output

        return record

    def __enter__(self) -> "HiddenStateCollector":
        self.states = {}
        self._handles = [self.layers[i].register_forward_hook(self._hook(i)) for i in self.layer_indices]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def stacked(self) -> torch.Tensor:
        """``[len(layer_indices), B, N, D]`` in layer order."""
        missing = [i for i in self.layer_indices if i not in self.states]
        if missing:
            raise RuntimeError(f"no hidden state recorded for layers {missing}: run a forward pass inside the context")
        return torch.stack([self.states[i] for i in self.layer_indices])


def forward_with_hooks(model: nn.Module, handles: Sequence, **inputs) -> None:
    """One ``no_grad`` forward of ``model`` for the hooks behind ``handles``; removes them after,
    even when the forward fails."""
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
