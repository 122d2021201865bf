"""Align faces to a mean face with a similarity transform, then cut the mouth crop.

The mean face is built per clip: every frame's landmarks are normalised so the eye centres
sit at fixed canonical positions, then averaged. Fixing the eye distance (EYE_DISTANCE px)
fixes the face scale, so 96x96 crops frame the mouth the same way in every clip.
"""

from __future__ import annotations

import cv2
import numpy as np

from avsr_sinks.data.preprocessing.landmarks import LEFT_EYE, MOUTH, RIGHT_EYE, STABLE_POINTS

CROP_SIZE = 96
EYE_DISTANCE = 64.0  # px between eye centres in the aligned face; mouth ~ 50 px wide
LEFT_EYE_CANON = np.array([96.0, 100.0])
RIGHT_EYE_CANON = LEFT_EYE_CANON + [EYE_DISTANCE, 0.0]


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src [N,2] to
    dst [N,2] (Umeyama, no reflection), as a 2x3 matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / (s ** 2).sum(1).mean()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points [..., 2]."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def mean_face(landmarks: np.ndarray) -> np.ndarray:
    """[68, 2] mean of the clip's landmarks [T, 68, 2] after putting each frame's eye centres
    at the canonical positions."""
    canon = np.stack([LEFT_EYE_CANON, RIGHT_EYE_CANON])
    normalised = []
    for lm in landmarks:
        eyes = np.stack([lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)])
        normalised.append(apply(estimate_similarity(eyes, canon), lm))
    return np.mean(normalised, axis=0)


def crop_transforms(landmarks: np.ndarray, reference: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """[T, 2, 3] matrices mapping each raw frame into its crop: align the stable points to the
    reference face, then shift so the mouth centre lands at the crop centre."""
    matrices = []
    for lm in landmarks:
        align = estimate_similarity(lm[STABLE_POINTS], reference[STABLE_POINTS])
        mouth = apply(align, lm[MOUTH]).mean(0)
        align[:, 2] += (crop_size - 1) / 2 - mouth
        matrices.append(align)
    return np.stack(matrices)


def warp_crops(frames: np.ndarray, matrices: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Warp frames [T, H, W(, C)] with [T, 2, 3] matrices into crops [T, crop, crop(, C)]."""
    return np.stack([cv2.warpAffine(f, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for f, m in zip(frames, matrices)])
