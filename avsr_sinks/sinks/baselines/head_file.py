"""The JSON file that carries an ACT head list from the head search to evaluation.

Format: ``{"heads": [[layer, head], ...], "meta": {...}}`` with 0-indexed layers and heads;
``meta`` is free-form (beta, threshold, scores, the model it was searched on).
"""

from __future__ import annotations

import json
from pathlib import Path


def save_act_heads(path: str | Path, heads: list[tuple[int, int]], meta: dict | None = None) -> Path:
    """Write ``heads`` (and ``meta``) to ``path`` as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"heads": [[int(layer), int(head)] for layer, head in heads], "meta": meta or {}}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def load_act_heads(path: str | Path) -> list[tuple[int, int]]:
    """The (layer, head) pairs stored in an ACT head file written by :func:`save_act_heads`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ACT head file {path} does not exist: run the ACT head search first or fix the path")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"ACT head file {path} is not valid JSON ({error})") from error
    entries = payload.get("heads") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"ACT head file {path} needs a top-level 'heads' list of [layer, head] pairs")
    heads = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, int) and v >= 0 for v in entry)):
            raise ValueError(f"ACT head file {path}: entry {entry!r} in 'heads' is not a [layer, head] pair of "
                             "non-negative integers")
        heads.append((entry[0], entry[1]))
    return heads
