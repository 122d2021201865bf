"""One raw clip -> mouth-crop mp4 + 16 kHz wav, written under temp names then renamed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsr_sinks.data.media import SAMPLES_PER_FRAME, write_audio, write_video
from avsr_sinks.data.preprocessing import alignment, raw_media, smoothing
from avsr_sinks.data.preprocessing.landmarks import LandmarkDetector

MIN_FACE_FRACTION = 0.5  # below this share of frames with a face, the crops would be guesses


@dataclass
class ClipResult:
    """What happened to one clip: ``status`` is ok, skipped (already done) or failed."""

    rel_path: str
    status: str
    n_frames: int = 0
    has_audio: bool = False
    message: str = ""
    matrices: np.ndarray | None = None  # [T, 2, 3] raw frame -> crop, for checks and debugging


@dataclass
class CropResult:
    crops: np.ndarray  # [T, 96, 96, 3] uint8
    matrices: np.ndarray  # [T, 2, 3]
    source_indices: np.ndarray  # source frame behind each 25 fps frame
    face_fraction: float


def mouth_crops(frames: np.ndarray, fps: float, detector: LandmarkDetector, smooth_window: int = 5) -> CropResult:
    """Resample to 25 fps, detect landmarks, fill gaps, smooth, align to the clip's mean face,
    and cut 96x96 crops centred on the mouth."""
    indices = raw_media.resample_indices(len(frames), fps)
    frames = frames[indices]
    detected = detector.detect_all(frames)
    face_fraction = sum(lm is not None for lm in detected) / max(len(detected), 1)
    if face_fraction < MIN_FACE_FRACTION:
        raise ValueError(f"face found in only {face_fraction:.0%} of frames")
    landmarks = smoothing.smooth(smoothing.interpolate_missing(detected), smooth_window)
    matrices = alignment.crop_transforms(landmarks, alignment.mean_face(landmarks))
    return CropResult(alignment.warp_crops(frames, matrices), matrices, indices, face_fraction)


def fit_audio(waveform: np.ndarray, n_frames: int) -> np.ndarray:
    """Cut or zero-pad to exactly 640 samples per video frame, as the dataset expects."""
    n = n_frames * SAMPLES_PER_FRAME
    return waveform[:n] if len(waveform) >= n else np.pad(waveform, (0, n - len(waveform)))


def outputs_complete(stem: Path) -> bool:
    """Done = the mp4 exists and is non-empty (it is renamed into place only when whole);
    the wav is written first, so a present mp4 means the wav step has finished too."""
    mp4 = stem.with_suffix(".mp4")
    return mp4.is_file() and mp4.stat().st_size > 0


def _write_atomically(final: Path, writer) -> None:
    tmp = final.with_name(final.stem + ".partial" + final.suffix)  # keeps the extension for the muxer
    writer(tmp)
    os.replace(tmp, final)


def process_clip(video: Path, rel_path: str, out_stem: Path, detector: LandmarkDetector,
                 audio_file: Path | None = None, smooth_window: int = 5) -> ClipResult:
    """Preprocess one clip; never raises on a bad clip, returns a failed ClipResult instead."""
    if outputs_complete(out_stem):
        return ClipResult(rel_path, "skipped", message="outputs exist")
    try:
        frames, fps = raw_media.read_rgb_frames(video)
        result = mouth_crops(frames, fps, detector, smooth_window)
        n = len(result.crops)
        waveform = raw_media.read_audio_file(audio_file) if audio_file else raw_media.read_audio_track(video)
        out_stem.parent.mkdir(parents=True, exist_ok=True)
        if waveform is not None:
            _write_atomically(out_stem.with_suffix(".wav"), lambda p: write_audio(p, fit_audio(waveform, n)))
        _write_atomically(out_stem.with_suffix(".mp4"), lambda p: write_video(p, result.crops))
    except Exception as err:  # a bad clip is reported and skipped, never kills the run
        return ClipResult(rel_path, "failed", message=f"{type(err).__name__}: {err}")
    message = "" if waveform is not None else "no audio stream and no separate audio: no wav written"
    return ClipResult(rel_path, "ok", n, waveform is not None, message, result.matrices)
