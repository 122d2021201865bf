"""Additive noise at a signal-to-noise ratio: noisy evaluation (the paper's SNR sweeps) and training."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .media import SAMPLE_RATE, read_audio

NOISE_KINDS = ("white", "babble")


@dataclass(frozen=True)
class NoiseConfig:
    """Noise at ``snr_db``: from ``noise_file`` (a 16 kHz wav, looped/cut) or generated ``kind``."""

    snr_db: float
    noise_file: str | None = None
    kind: str = "babble"

    def __post_init__(self) -> None:
        if self.noise_file is None and self.kind not in NOISE_KINDS:
            raise ValueError(f"noise kind {self.kind!r} unknown: use one of {NOISE_KINDS} or give a noise_file")
        if self.noise_file is not None and not Path(self.noise_file).is_file():
            raise FileNotFoundError(f"noise_file {self.noise_file} does not exist: check eval.noise_file or data.train_noise.noise_file")


@dataclass(frozen=True)
class TrainNoiseConfig:
    """Noise added while training, as auto_avsr does: each sample draws its SNR from ``snr_db``.

    ``None`` in ``snr_db`` means clean, so the model keeps seeing clean audio too. Without noisy
    training audio an AVSR model has no reason to learn to read lips when the audio fails.
    """

    snr_db: tuple[float | None, ...] = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, None)
    kind: str = "babble"
    noise_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr_db", tuple(None if v is None else float(v) for v in self.snr_db))
        if not self.snr_db:
            raise ValueError("train_noise.snr_db is empty: list SNRs in dB (null = clean), or set train_noise: null")
        NoiseConfig(0.0, self.noise_file, self.kind)  # the same checks of kind and file

    @classmethod
    def from_settings(cls, settings) -> TrainNoiseConfig | None:
        """The config's ``data.train_noise`` mapping ({snr_db, kind, noise_file}); None when it or
        its ``snr_db`` is null (no training noise)."""
        if not settings or settings.get("snr_db") is None:
            return None
        settings = dict(settings)
        if "snr_db" in settings:
            settings["snr_db"] = tuple(settings["snr_db"])
        return cls(**settings)

    def draw(self, rng: np.random.Generator) -> NoiseConfig | None:
        """The noise of one training sample (None: leave it clean)."""
        snr = self.snr_db[int(rng.integers(len(self.snr_db)))]
        return None if snr is None else NoiseConfig(snr, self.noise_file, self.kind)


def utterance_rng(seed: int, utterance_id: str) -> np.random.Generator:
    """A generator fixed by (seed, utterance): the same noise every evaluation, any worker count."""
    return np.random.default_rng([seed, zlib.crc32(utterance_id.encode())])


def babble_noise(n_samples: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Speech-shaped babble stand-in: several low-passed noises with syllable-rate (~4 Hz) envelopes."""
    t = np.arange(n_samples) / SAMPLE_RATE
    total = np.zeros(n_samples)
    # Imported here: scipy.signal takes seconds to import, and the config check imports this module.
    from scipy.signal import lfilter

    for _ in range(talkers):
        source = lfilter([1.0], [1.0, -0.9], rng.standard_normal(n_samples))  # 1/f-ish speech tilt
        rate, phase = rng.uniform(3.0, 5.0), rng.uniform(0, 2 * np.pi)
        total += source * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + phase)) ** 2
    return total


@lru_cache(maxsize=4)
def _noise_file_samples(path: str) -> np.ndarray:
    samples = read_audio(path).astype(np.float64)
    if samples.size == 0 or not np.any(samples):
        raise ValueError(f"noise_file {path} is empty or silent: give a recording with noise in it")
    return samples


def noise_segment(config: NoiseConfig, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` of noise: a random-offset excerpt of the file (looped) or generated noise."""
    if config.noise_file is not None:
        source = _noise_file_samples(str(config.noise_file))
        start = int(rng.integers(0, source.size))
        return np.resize(np.roll(source, -start), n_samples)
    if config.kind == "white":
        return rng.standard_normal(n_samples)
    return babble_noise(n_samples, rng)


def add_noise(audio: np.ndarray, config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """``audio + g * noise`` with g set so that 10 log10(P_audio / P_noise) = snr_db exactly.

    Silent audio has no defined SNR and is returned unchanged.
    """
    audio = np.asarray(audio, dtype=np.float64)
    signal_power = np.mean(audio**2) if audio.size else 0.0
    if signal_power == 0.0:
        return audio.astype(np.float32)
    noise = noise_segment(config, audio.size, rng)
    gain = np.sqrt(signal_power / (np.mean(noise**2) * 10 ** (config.snr_db / 10)))
    return (audio + gain * noise).astype(np.float32)
