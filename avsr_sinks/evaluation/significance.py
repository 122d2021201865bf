"""Is a WER difference between two systems larger than the test set's sampling noise?

Paired bootstrap over utterances (Bisani and Ney, 2004): both systems decoded the same
utterances; resample the utterances with replacement, recompute the corpus-level WER difference
on each resample, and report the percentile interval. It covers the choice of test utterances
only, not the spread between two trainings of the same model (seeds), which can be larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .wer import UtteranceErrors

_CHUNK = 1000  # resamples drawn at once: bounded memory on large test sets


@dataclass(frozen=True)
class WERDelta:
    """WER(other) - WER(base) on the whole set, with its bootstrap interval (fractions, not %)."""

    delta: float
    low: float
    high: float
    confidence: float
    resamples: int


def paired_bootstrap_wer_delta(base: list[UtteranceErrors], other: list[UtteranceErrors], resamples: int = 10_000,
                               confidence: float = 0.95, seed: int = 0) -> WERDelta:
    """Bootstrap interval of WER(other) - WER(base); utterances are paired by id."""
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"resamples={resamples} must be >= 1 and confidence={confidence} in (0, 1)")
    base_ids, other_by_id = [u.id for u in base], {u.id: u for u in other}
    if len(other_by_id) != len(other) or sorted(base_ids) != sorted(other_by_id):
        raise ValueError(f"the two systems decoded different utterances ({len(base)} vs {len(other)}, "
                         f"ids differ): a paired bootstrap needs the same test set for both")
    if not base:
        raise ValueError("no utterances to compare")
    error_diff = np.array([other_by_id[u.id].errors - u.errors for u in base], dtype=np.int64)
    words = np.array([u.reference_words for u in base], dtype=np.int64)
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, resamples, _CHUNK):
        picks = rng.integers(0, len(base), size=(min(_CHUNK, resamples - start), len(base)))
        deltas.append(error_diff[picks].sum(axis=1) / words[picks].sum(axis=1))
    deltas = np.concatenate(deltas)
    tail = (1 - confidence) / 2
    # inverted_cdf: each bound is a resampled value, not an interpolation between two of them.
    low, high = np.quantile(deltas, [tail, 1 - tail], method="inverted_cdf")
    return WERDelta(float(error_diff.sum() / words.sum()), float(low), float(high), confidence, resamples)
