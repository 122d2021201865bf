"""Routing a Llama-family model's attention through a baseline's own attention function.

transformers 5 attention modules look their kernel up by name,
``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``, and the model builds its masks with
``ALL_MASK_ATTENTION_FUNCTIONS`` under the same name. A baseline registers its function under a
new name ("avsr_<method>_<base>"), registers the base implementation's mask builder under it too
(so masks keep their usual form: ``None`` for plain causal SDPA, a boolean ``[B, 1, q, kv]`` for
SDPA with padding, an additive float mask for eager), and points the model's config at it.
The baseline function receives the attention module, so it can read the module's own settings
and parameters and hand every other case to the base function unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

from ..hooks import decoder_layers

PREFIX = "avsr_"


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The ``self_attn`` module of every decoder layer, in layer order."""
    return [layer.self_attn for layer in decoder_layers(model)]


def base_attention_function(name: str) -> Callable:
    """The attention function transformers uses for implementation ``name``."""
    return eager_attention_forward if name == "eager" else ALL_ATTENTION_FUNCTIONS[name]


class AttentionOverride:
    """Points every attention module of ``model`` at ``function`` (partially applied with
    ``base_function=``) until :meth:`remove` restores the original implementation.

    ``supported`` lists the base implementations the function can stand in for; anything else
    (or a model already routed through another baseline) is refused with a clear error.
    """

    def __init__(self, model: nn.Module, method: str, function: Callable, supported: tuple[str, ...]) -> None:
        self.modules = attention_modules(model)
        self.configs = list({id(m.config): m.config for m in self.modules}.values())
        bases = {c._attn_implementation for c in self.configs}
        if len(bases) != 1:
            raise ValueError(f"attention layers disagree on config._attn_implementation ({sorted(map(str, bases))})")
        self.base = bases.pop()
        if self.base is not None and self.base.startswith(PREFIX):
            raise ValueError(f"the model already runs the '{self.base}' baseline; call remove() on its handle first")
        if self.base not in supported:
            raise ValueError(
                f"{method} needs config._attn_implementation in {supported}, got '{self.base}': load the model "
                f"with attn_implementation='sdpa' (or call model.set_attn_implementation('sdpa'))"
            )
        self.name = f"{PREFIX}{method}_{self.base}"
        ALL_ATTENTION_FUNCTIONS.register(self.name, partial(function, base_function=base_attention_function(self.base)))
        ALL_MASK_ATTENTION_FUNCTIONS.register(self.name, ALL_MASK_ATTENTION_FUNCTIONS[self.base])
        for config in self.configs:
            config._attn_implementation = self.name

    def remove(self) -> None:
        """Give the attention modules their original implementation back."""
        for config in self.configs:
            config._attn_implementation = self.base


def visible_keys(attention_mask: torch.Tensor | None, q_len: int, kv_len: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[B or 1, 1, q_len, kv_len]``: which key each query may attend to.

    Reads the masks transformers builds: boolean (True = attend), additive float (0 = attend,
    the dtype's minimum or -inf = hidden) or ``None``. ``None`` means what SDPA's ``is_causal``
    path means there: every key for a single query (a decoding step), otherwise causal aligned
    top-left (keys past the queries are empty cache slots).
    """
    if attention_mask is None:
        if q_len == 1:
            return torch.ones(1, 1, 1, kv_len, dtype=torch.bool, device=device)
        return torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril()[None, None]
    if attention_mask.dtype == torch.bool:
        return attention_mask[..., :kv_len]
    return attention_mask[..., :kv_len] > torch.finfo(attention_mask.dtype).min / 2
