"""Reading and writing the media files of the auto_avsr layout (mp4 video, 16 kHz wav)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
VIDEO_FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640


def write_video(path: str | Path, frames: np.ndarray, fps: int = VIDEO_FPS) -> None:
    """Write uint8 frames [T, H, W] (grayscale) or [T, H, W, 3] (RGB) as H.264 mp4."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"write_video({path}): frames must be uint8, got {frames.dtype}")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"write_video({path}): expected [T,H,W] or [T,H,W,3], got {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # Near-lossless and deterministic: single-threaded, fixed quality.
        stream.options = {"crf": "10", "preset": "veryfast", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_audio(path: str | Path, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono float waveform in [-1, 1] as 16-bit PCM wav."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(waveform, dtype=np.float32), sample_rate, subtype="PCM_16")


# Planar YUV formats whose first plane is the luma we want; the "j" ones are full range.
_LIMITED_RANGE_YUV = {"yuv420p", "yuv422p", "yuv444p"}
_FULL_RANGE_YUV = {"yuvj420p", "yuvj422p", "yuvj444p", "gray"}
# Limited (TV) range 16..235 -> 0..255, as a decoder to RGB and back to gray would give.
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16.0) * (255.0 / 219.0)), 0, 255).astype(np.uint8)


def _gray(frame: av.VideoFrame) -> np.ndarray:
    """Full-range luma [H, W]: read the Y plane directly (3x faster than swscale's gray)."""
    if frame.format.name not in _LIMITED_RANGE_YUV | _FULL_RANGE_YUV:
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    return luma.copy() if frame.format.name in _FULL_RANGE_YUV else _TV_TO_FULL[luma]


def read_video_gray(path: str | Path) -> np.ndarray:
    """Decode a video to uint8 grayscale frames [T, H, W] (PyAV, one thread: workers parallelise)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        frames = [_gray(frame) for frame in container.decode(stream)]
    if not frames:
        return np.zeros((0, 0, 0), dtype=np.uint8)
    return np.stack(frames)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a wav as float32 mono [S]; a different sample rate is an error (resample offline)."""
    waveform, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz; resample the corpus")
    return waveform.mean(axis=1)
