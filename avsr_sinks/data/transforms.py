"""Video and audio transforms of auto_avsr / Llama-AVSR (DESIGN.md section 7)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .media import SAMPLE_RATE, VIDEO_FPS

CROP_SIZE = 88
VIDEO_MEAN, VIDEO_STD = 0.421, 0.165


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations; masks are of up to ``*_mask_window`` per ``*_mask_stride``."""

    random_crop: bool = True
    horizontal_flip: bool = False
    video_mask_window: int = 10  # frames (0.4 s) per second of video, as auto_avsr
    video_mask_stride: int = VIDEO_FPS
    audio_mask_window: int = 6400  # samples (0.4 s) per second of audio
    audio_mask_stride: int = SAMPLE_RATE


def time_mask_(x: torch.Tensor, window: int, stride: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero, in place, ``len(x) // stride`` random spans of at most ``window`` steps along dim 0."""
    length = x.shape[0]
    for _ in range(length // stride if stride > 0 else 0):
        span = int(torch.randint(0, window + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(length - span, 0) + 1, (1,), generator=generator))
        x[start:start + span] = 0
    return x


def video_transform(frames: torch.Tensor, augment: AugmentConfig | None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 gray frames [T, H, W] -> normalised float crops [T, 88, 88].

    ``augment=None`` (val/test) takes the centre crop and nothing random.
    """
    if frames.shape[1] < CROP_SIZE or frames.shape[2] < CROP_SIZE:
        raise ValueError(f"video frames {tuple(frames.shape[1:])} are smaller than the {CROP_SIZE}x{CROP_SIZE} crop")
    height, width = frames.shape[1:]
    if augment is not None and augment.random_crop:
        top = int(torch.randint(0, height - CROP_SIZE + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - CROP_SIZE + 1, (1,), generator=generator))
    else:
        top, left = (height - CROP_SIZE) // 2, (width - CROP_SIZE) // 2
    x = frames[:, top:top + CROP_SIZE, left:left + CROP_SIZE].float().div_(255.0)  # crop first: less to convert
    if augment is not None:
        if augment.horizontal_flip and bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(-1)
        time_mask_(x, augment.video_mask_window, augment.video_mask_stride, generator)
    return x.sub_(VIDEO_MEAN).div_(VIDEO_STD)


def fit_audio(waveform: torch.Tensor, n_frames: int, samples_per_frame: int) -> torch.Tensor:
    """Cut or zero-pad audio to exactly ``samples_per_frame * n_frames`` samples."""
    target = samples_per_frame * n_frames
    if waveform.shape[0] >= target:
        return waveform[:target]
    return torch.nn.functional.pad(waveform, (0, target - waveform.shape[0]))
