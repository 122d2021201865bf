"""Command-line conveniences applied before Hydra parses the overrides."""

from __future__ import annotations

import re

_COMPRESSION = re.compile(r"^(\+{0,2}compression)=([^\[\]]*,[^\[\]]*)$")


def normalize_overrides(argv: list[str]) -> list[str]:
    """Accept ``compression=16,5`` as written in the paper's notation.

    Hydra reads a bare comma list as a multirun sweep and refuses it in a single run; the
    command line users type is ``compression=16,5``, so it becomes ``compression=[16,5]``.
    """
    return [_COMPRESSION.sub(r"\1=[\2]", arg) for arg in argv]
