"""Command-line conveniences applied before Hydra parses the overrides."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .config_validation import ConfigError

_COMPRESSION = re.compile(r"^(\+{0,2}compression)=([^\[\]]*,[^\[\]]*)$")


def normalize_overrides(argv: list[str]) -> list[str]:
    """Accept ``compression=16,5`` as written in the paper's notation.

    Hydra reads a bare comma list as a multirun sweep and refuses it in a single run; the
    command line users type is ``compression=16,5``, so it becomes ``compression=[16,5]``.
    """
    return [_COMPRESSION.sub(r"\1=[\2]", arg) for arg in argv]


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=<run folder>`` continues that run: its own overrides (Hydra's
    ``.hydra/overrides.yaml``), the same folder (``hydra.run.dir``) and ``ckpt_path=last`` (its
    newest good checkpoint). Overrides given beside it win, e.g. ``trainer.max_epochs=10``."""
    given = [arg for arg in argv if not arg.startswith("resume=")]
    if len(given) == len(argv):
        return argv
    run = Path(next(arg for arg in argv if arg.startswith("resume=")).split("=", 1)[1]).expanduser()
    saved = run / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError("resume", str(run), f"{saved} does not exist", "resume= takes a run folder written by scripts/train.py")
    merged = {}
    for override in [*yaml.safe_load(saved.read_text()), f"hydra.run.dir={run}", "ckpt_path=last", *given]:
        merged.pop(_override_key(override), None)  # the later one wins, in its own position
        merged[_override_key(override)] = override
    return list(merged.values())
