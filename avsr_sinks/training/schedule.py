"""Linear warmup then cosine decay, as a per-step LambdaLR multiplier, once or per training stage."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-indexed)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def staged_warmup_cosine(step: int, first_stage_steps: int, warmup_steps: int, total_steps: int,
                         min_ratio: float = 0.0) -> float:
    """:func:`warmup_cosine` over the first ``first_stage_steps`` steps, then again over the rest:
    each stage (the projector's CTC warm-up, then the LLM training) warms up and decays on its own.
    With no first stage it is :func:`warmup_cosine`."""
    if step < first_stage_steps:
        return warmup_cosine(step, warmup_steps, first_stage_steps, min_ratio)
    return warmup_cosine(step - first_stage_steps, warmup_steps, total_steps - first_stage_steps, min_ratio)
