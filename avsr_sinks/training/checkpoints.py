"""Loading trained checkpoints safely, and averaging the last k of them.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers
only, never pickled code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..model.added_tokens import upgrade_peft_token_keys
from ..model.avsr import LlamaAVSR
from .build import build_model
from .datamodule import resolve_corpus


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (config key ckpt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file or one that needs arbitrary unpickling
        raise ValueError(f"cannot read checkpoint {path} safely (weights_only=True): {err}") from err


def checkpoint_step(path: str | Path) -> int | None:
    """The optimizer step a checkpoint holds the state of (an averaged one: its newest source's),
    written beside evaluation and analysis results: a result says which state it measured."""
    return read_checkpoint(path).get("global_step")


def checkpoint_config(checkpoint: Mapping, path: str | Path) -> dict:
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if not config:
        raise ValueError(f"checkpoint {path} holds no run config: it was not written by scripts/train.py")
    return config


def average_checkpoints(paths: list[str | Path], output: str | Path) -> Path:
    """Average the trained parameters of several checkpoints of one run into ``output``.

    The result keeps the last checkpoint's config and drops optimizer/loop state (it is for
    evaluation, not for resuming).
    """
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    checkpoints = [read_checkpoint(p) for p in paths]
    for checkpoint in checkpoints:
        checkpoint["state_dict"] = upgrade_peft_token_keys(checkpoint["state_dict"])
    keys = set(checkpoints[0]["state_dict"])
    for path, ckpt in zip(paths, checkpoints):
        if set(ckpt["state_dict"]) != keys:
            raise ValueError(f"{path} holds other parameters than {paths[0]}: not the same run")
    averaged = {k: sum(c["state_dict"][k].double() for c in checkpoints).div(len(checkpoints)).to(checkpoints[0]["state_dict"][k].dtype)
                for k in keys}
    output = Path(output)
    torch.save({"state_dict": averaged, "hyper_parameters": checkpoints[-1]["hyper_parameters"],
                "global_step": checkpoints[-1].get("global_step"), "averaged_from": [str(p) for p in paths]}, output)
    return output


def load_trained_model(path: str | Path, data_overrides: Mapping | None = None) -> tuple[LlamaAVSR, dict]:
    """Rebuild LlamaAVSR from a checkpoint's config and load its trained parameters.

    ``data_overrides`` replaces keys of the config's ``data`` section (e.g. another test CSV).
    The trained state loads as :func:`load_trained_state` loads it.
    """
    checkpoint = read_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    config = {**config, "data": {**config["data"], **(data_overrides or {})}}
    corpus = resolve_corpus(config["data"])
    model = build_model(config, corpus["vocabulary"])
    load_trained_state(model, checkpoint["state_dict"], path)
    return model, config


def load_trained_state(model: LlamaAVSR, state_dict: Mapping, path: str | Path = "the checkpoint") -> None:
    """Load a checkpoint's ``state_dict`` (the LightningModule's keys, ``model.``-prefixed) into
    ``model``. Every key it holds must exist in the model, and every trained one (trainable
    parameters and the BatchNorm statistics beside them) must be in it. A checkpoint written
    while peft trained the added token rows loads them as ``added_rows``."""
    state = {k.removeprefix("model."): v for k, v in upgrade_peft_token_keys(state_dict).items()}
    missing_trainable = sorted(model.trained_state_keys() - set(state))
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected or missing_trainable:
        raise ValueError(f"checkpoint {path} does not fit the model: unexpected {unexpected[:5]}, missing {missing_trainable[:5]}")
