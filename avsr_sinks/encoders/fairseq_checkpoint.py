"""Read official fairseq / AV-HuBERT checkpoints without fairseq and without running pickled code.

``torch.load(weights_only=True)`` keeps its tensor-only unpickler; the few fairseq and omegaconf
classes that released checkpoints name (a fairseq ``Dictionary`` in ``task_state``, an omegaconf
``DictConfig`` in ``cfg``) are allow-listed as inert placeholders that only store their state.
Any other global (``os.system``, ``builtins.eval``, ...) is refused before it is called.
"""

from __future__ import annotations

import argparse
import collections
import pickle
from pathlib import Path
from typing import Any

import torch

# Pickled class names released checkpoints may contain; each becomes an inert placeholder.
PLACEHOLDER_NAMES = (
    "fairseq.data.dictionary.Dictionary",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode",
    "typing.Any",
)

# Keys used only by pretraining (masked prediction heads, optional target GLU); dropped on purpose.
PRETRAINING_ONLY_PREFIXES = ("final_proj.", "label_embs_concat", "mask_emb", "target_glu.")


class InertObject:
    """Stands in for a pickled class: stores the pickled state, runs nothing."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state) form
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__["state"] = state


def _placeholder(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    return type(name, (InertObject,), {"__module__": module, "__qualname__": name})


# Plain containers omegaconf pickles as type references; constructing them runs no user code.
_ALLOW_LIST = [(_placeholder(name), name) for name in PLACEHOLDER_NAMES]
_ALLOW_LIST += [argparse.Namespace, dict, list, int, collections.defaultdict]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


def load_checkpoint(path: str | Path) -> dict:
    """Load a fairseq checkpoint dict safely (weights_only with an explicit allow-list)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the encoder checkpoint path in the config")
    try:
        with torch.serialization.safe_globals(_ALLOW_LIST):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to unpickle: it names something outside the allow-list of tensors, "
            f"fairseq Dictionary and omegaconf config classes, so it could run code. Only load "
            f"checkpoints from a trusted source (the official AV-HuBERT release). Details: {error}"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path}: expected a fairseq checkpoint dict with a 'model' state dict")
    return checkpoint


def plain(value: Any) -> Any:
    """Turn placeholder omegaconf containers/nodes and Namespaces into plain Python values."""
    if isinstance(value, argparse.Namespace):
        return {key: plain(item) for key, item in vars(value).items()}
    if isinstance(value, InertObject):
        state = value.__dict__.get("state")
        if isinstance(state, dict) and "_content" in state:
            return plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:
            return plain(state["_val"])
        return state
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def model_config(checkpoint: dict, path: str | Path = "checkpoint") -> dict:
    """The model hyper-parameters: ``cfg["model"]`` (new fairseq) or ``args`` (old fairseq)."""
    cfg = plain(checkpoint.get("cfg"))
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        return cfg["model"]
    args = plain(checkpoint.get("args"))
    if isinstance(args, dict):
        return args
    raise CheckpointError(f"{path}: has neither cfg['model'] nor args; cannot read the encoder topology")


def fuse_weight_norm(state: dict[str, torch.Tensor], prefix: str, dim: int) -> None:
    """Replace ``prefix.weight_g`` / ``prefix.weight_v`` by ``prefix.weight = g * v / ||v||``,
    the norm taken over every axis except ``dim`` (old ``torch.nn.utils.weight_norm``)."""
    g, v = state.pop(f"{prefix}.weight_g"), state.pop(f"{prefix}.weight_v")
    other_axes = [axis for axis in range(v.dim()) if axis != dim]
    state[f"{prefix}.weight"] = g * v / v.norm(dim=other_axes, keepdim=True)


def drop_pretraining_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the pretraining-only heads."""
    return {key: value for key, value in state.items() if not key.startswith(PRETRAINING_ONLY_PREFIXES)}
