"""Greedy search for the heads ACT should calibrate, scored by a caller's function (dev-set WER).

What it does, in order:

1. scores the empty list (the model without ACT) once: that is the score to beat;
2. visits the candidate heads one by one, layers ascending and heads ascending within a layer
   (default candidates: layers 2..L-2, 0-indexed, every head; the range ACT calibrates);
3. for each, scores the current list plus that head and keeps the head when the score drops
   by more than ``min_improvement`` (lower is better), which makes it the new score to beat;
4. stops after the last candidate, or as soon as ``budget`` scores (the first one included)
   have been spent, or when ``max_heads`` heads are kept.

This is one first-improvement pass: ``1 + len(candidates)`` scores at most, so a budget is only
needed when even that is too many dev-set decodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .head_file import save_act_heads

Head = tuple[int, int]


@dataclass
class HeadSearchResult:
    """The kept heads, their score, the score without ACT, and every (heads, score) tried."""

    heads: list[Head]
    score: float
    base_score: float
    trials: list[tuple[list[Head], float]] = field(default_factory=list)


def default_candidates(num_layers: int, num_heads: int) -> list[Head]:
    """Every head of layers 2..L-2 (0-indexed), the layers ACT calibrates, in visiting order."""
    return [(layer, head) for layer in range(2, num_layers - 1) for head in range(num_heads)]


def greedy_head_search(
    score_fn: Callable[[list[Head]], float],
    candidates: Iterable[Head],
    budget: int | None = None,
    max_heads: int | None = None,
    min_improvement: float = 0.0,
    output_path: str | Path | None = None,
    meta: dict | None = None,
) -> HeadSearchResult:
    """Greedy first-improvement search over ``candidates`` (see the module docstring).

    ``score_fn(heads)`` returns a score where lower is better (dev-set WER with ACT on
    ``heads``). With ``output_path`` the kept heads are written there as an ACT head file
    (with ``meta`` and the scores) for evaluation to read.
    """
    candidates = list(candidates)
    if budget is not None and budget < 1:
        raise ValueError(f"head search budget must allow at least the baseline score (>= 1), got {budget}")
    trials: list[tuple[list[Head], float]] = []

    def score(heads: list[Head]) -> float:
        value = float(score_fn(list(heads)))
        trials.append((list(heads), value))
        return value

    kept: list[Head] = []
    base_score = best = score(kept)
    for candidate in candidates:
        if (budget is not None and len(trials) >= budget) or (max_heads is not None and len(kept) >= max_heads):
            break
        trial = score(kept + [candidate])
        if trial < best - min_improvement:
            kept, best = kept + [candidate], trial
    result = HeadSearchResult(kept, best, base_score, trials)
    if output_path is not None:
        save_act_heads(output_path, kept, {**(meta or {}), "score": best, "base_score": base_score,
                                           "scores_spent": len(trials)})
    return result
