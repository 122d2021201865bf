"""What a sample must be for the model to take it, checked on its label CSV row before any media
is read: a transcript to learn, at least one compression window of frames, and a sequence that
fits the LLM's positions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .manifest import LabelRow

# Kinds of what is wrong with a row (validate_data.py reports them, the dataset skips them).
LABEL_PROBLEM_KINDS = ("empty_transcript", "too_short", "too_long_for_model")


@dataclass(frozen=True)
class SampleLimits:
    """``min_frames``: video frames of one compression window (a shorter sample gives the LLM a
    partial window only); ``max_positions``: the LLM's positions and ``sequence_length(row)`` the
    positions a row takes (BOS, modality blocks, prompt, transcript, EOS); None: not checked."""

    min_frames: int = 1
    max_positions: int | None = None
    sequence_length: Callable[[LabelRow], int] | None = None

    def problems(self, row: LabelRow) -> list[tuple[str, str]]:
        """Every (kind, detail) that keeps ``row`` from training; empty when it is fine."""
        found = []
        if not (row.transcript or "").strip():
            found.append(("empty_transcript", "the label CSV gives no transcript"))
        if row.n_frames < self.min_frames:
            found.append(("too_short", f"{row.n_frames} frames; one compression window takes {self.min_frames}"))
        elif self.max_positions is not None and self.sequence_length is not None:
            length = self.sequence_length(row)
            if length > self.max_positions:
                found.append(("too_long_for_model", f"{length} LLM positions, more than the LLM's {self.max_positions}"))
        return found
