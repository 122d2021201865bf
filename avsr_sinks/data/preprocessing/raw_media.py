"""Read raw (unprocessed) videos: RGB frames resampled to 25 fps and the audio track at 16 kHz.

PyAV directly: media.py's readers assume already-preprocessed 25 fps grayscale clips.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from avsr_sinks.data.media import SAMPLE_RATE, VIDEO_FPS


def read_rgb_frames(path: str | Path) -> tuple[np.ndarray, float]:
    """uint8 RGB frames [T, H, W, 3] and the stream's frame rate."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # workers parallelise across clips
        rate = stream.average_rate or stream.guessed_rate
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames or not rate:
        raise ValueError(f"{path}: no decodable frames")
    return np.stack(frames), float(rate)


def resample_indices(n_source: int, source_fps: float, target_fps: int = VIDEO_FPS) -> np.ndarray:
    """Source frame shown at each target time k / target_fps, over the source's duration."""
    fps = Fraction(source_fps).limit_denominator(1001 * 1000)
    n_target = int(Fraction(n_source) * target_fps / fps + Fraction(1, 2))  # round(duration * 25)
    times = [Fraction(k, target_fps) for k in range(n_target)]
    return np.array([min(int(t * fps), n_source - 1) for t in times], dtype=np.int64)


def read_audio_track(path: str | Path) -> np.ndarray | None:
    """Mono float32 audio of the video's first audio stream at 16 kHz, or None if it has none."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32) if chunks else None


def read_audio_file(path: str | Path) -> np.ndarray:
    """A separate audio file (any rate soundfile reads) as mono float32 at 16 kHz."""
    waveform, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = waveform.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = np.gcd(int(rate), SAMPLE_RATE)
        # Imported here: scipy.signal takes seconds to import, and prepare_data.py checks its arguments first.
        from scipy.signal import resample_poly

        mono = resample_poly(mono, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    return mono
