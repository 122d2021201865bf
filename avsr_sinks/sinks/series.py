"""The same analysis over several checkpoints: when do intermediate sinks appear?"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .detection import SinkRule
from .summary import sink_summary


def checkpoint_series(checkpoints: Iterable[tuple[str, nn.Module, dict]], token_labels: list[list[str]] | None = None,
                      sample: int = 0, rule: SinkRule = SinkRule()) -> list[dict]:
    """One row per ``(name, model, forward_inputs)``: the summary numbers plus
    ``intermediate_sinks`` (sorted label list of tokens that are intermediate sinks at any layer)
    and ``layers_with_intermediate`` (how many layers have one). ``forward_inputs`` may hold
    ``attention_mask``."""
    rows = []
    for name, model, inputs in checkpoints:
        inputs = dict(inputs)
        attention_mask: torch.Tensor | None = inputs.pop("attention_mask", None)
        summary = sink_summary(model, attention_mask, token_labels, sample, rule, **inputs)
        positions = sorted({p for row in summary["sink_positions"] for p in row["intermediate"]})
        labels = token_labels[sample] if token_labels is not None else [str(p) for p in range(max(positions, default=0) + 1)]
        rows.append({
            "checkpoint": name,
            "bos_alpha": summary["bos_alpha"],
            "intermediate_alpha": summary["intermediate_alpha"],
            "intermediate_label": summary["intermediate_label"],
            "max_activation_ratio": summary["max_activation_ratio"],
            "mean_bos_cosine": summary["mean_bos_cosine"],
            "intermediate_sinks": [labels[p] for p in positions],
            "layers_with_intermediate": sum(bool(row["intermediate"]) for row in summary["sink_positions"]),
        })
    return rows
