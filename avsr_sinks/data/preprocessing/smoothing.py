"""Fill frames without a detection and smooth landmark jitter over time."""

from __future__ import annotations

import numpy as np


def interpolate_missing(landmarks: list[np.ndarray | None]) -> np.ndarray:
    """[T, 68, 2] from per-frame landmarks with gaps: linear in time between detections,
    held constant before the first and after the last. Raises if no frame has a face."""
    found = [t for t, lm in enumerate(landmarks) if lm is not None]
    if not found:
        raise ValueError("no face detected in any frame")
    known = np.stack([landmarks[t] for t in found])  # [K, 68, 2]
    times = np.arange(len(landmarks))
    flat = known.reshape(len(found), -1)
    filled = np.stack([np.interp(times, found, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(len(landmarks), *known.shape[1:])


def smooth(landmarks: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving average over ``window`` frames (edges use the frames that exist)."""
    if window <= 1 or len(landmarks) <= 1:
        return landmarks.copy()
    half = window // 2
    csum = np.concatenate([np.zeros_like(landmarks[:1]), np.cumsum(landmarks, axis=0)])
    t = np.arange(len(landmarks))
    lo, hi = np.maximum(t - half, 0), np.minimum(t + half + 1, len(landmarks))
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None, None]
