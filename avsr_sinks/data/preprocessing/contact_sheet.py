"""Tile every n-th crop of a preprocessed clip into one PNG, to eyeball that crops follow the mouth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avsr_sinks.data.preprocessing.raw_media import read_rgb_frames


def tile(frames: np.ndarray, columns: int) -> np.ndarray:
    """[N, H, W, 3] -> one [rows*H, columns*W, 3] image (empty cells black)."""
    n, h, w, c = frames.shape
    rows = -(-n // columns)
    sheet = np.zeros((rows * h, columns * w, c), dtype=frames.dtype)
    for i, frame in enumerate(frames):
        r, k = divmod(i, columns)
        sheet[r * h:(r + 1) * h, k * w:(k + 1) * w] = frame
    return sheet


def write_contact_sheet(mp4: str | Path, png: str | Path, every: int = 10, columns: int = 5) -> np.ndarray:
    """Write every ``every``-th frame of ``mp4`` tiled ``columns`` wide to ``png``; returns the image."""
    frames, _ = read_rgb_frames(mp4)
    sheet = tile(frames[::every], columns)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {png}")
    return sheet
