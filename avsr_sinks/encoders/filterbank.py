"""AV-HuBERT's audio features: 26-band log filterbank, 25 ms / 10 ms, stacked by 4 (104 dims, 25 Hz).

Follows python_speech_features.logfbank (what the official loader calls) with its defaults:
pre-emphasis 0.97, rectangular 400-sample frames every 160 samples (the last one zero padded),
512-point power spectrum / 512, triangular mel filters on integer FFT bins, log with an eps floor.
Four consecutive frames are concatenated (zero padded to a multiple of 4) and the whole
utterance is layer-normed over time and frequency, as the official dataset does.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
NFFT = 512
NUM_BANDS = 26
STACK = 4  # 4 x 10 ms = one 25 Hz video frame
PREEMPHASIS = 0.97


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=None)
def mel_filterbank(num_bands: int = NUM_BANDS, nfft: int = NFFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular mel filters [num_bands, nfft // 2 + 1] on integer FFT bins (0 Hz to Nyquist)."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), num_bands + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(int)
    bank = np.zeros((num_bands, nfft // 2 + 1))
    for band in range(num_bands):
        low, centre, high = bins[band], bins[band + 1], bins[band + 2]
        for k in range(low, centre):
            bank[band, k] = (k - low) / (centre - low)
        for k in range(centre, high):
            bank[band, k] = (high - k) / (high - centre)
    return torch.tensor(bank, dtype=torch.float32)


def num_filterbank_frames(num_samples: int) -> int:
    """Frames python_speech_features makes from a signal (at least one)."""
    if num_samples <= FRAME_LENGTH:
        return 1
    return 1 + math.ceil((num_samples - FRAME_LENGTH) / FRAME_STEP)


def log_filterbank(wave: torch.Tensor) -> torch.Tensor:
    """Log mel energies [frames, 26] of one 1-D 16 kHz waveform."""
    wave = wave.float()
    wave = torch.cat([wave[:1], wave[1:] - PREEMPHASIS * wave[:-1]])
    frames = num_filterbank_frames(wave.numel())
    padded_length = (frames - 1) * FRAME_STEP + FRAME_LENGTH
    wave = F.pad(wave, (0, padded_length - wave.numel()))
    framed = wave.unfold(0, FRAME_LENGTH, FRAME_STEP)
    power = torch.fft.rfft(framed, n=NFFT).abs().pow(2) / NFFT
    energies = power @ mel_filterbank().to(wave.device).T
    return torch.log(torch.clamp(energies, min=torch.finfo(torch.float32).eps))


def stacked_filterbank(wave: torch.Tensor) -> torch.Tensor:
    """Stack 4 consecutive log filterbank frames: [ceil(frames / 4), 104] at 25 Hz."""
    feats = log_filterbank(wave)
    pad = (-feats.shape[0]) % STACK
    feats = F.pad(feats, (0, 0, 0, pad))
    return feats.reshape(-1, STACK * NUM_BANDS)


def audio_features(wave: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Official AV-HuBERT audio input for one utterance: stacked filterbank trimmed or zero padded
    to ``num_frames`` (the video length), then layer-normed over the whole utterance."""
    feats = stacked_filterbank(wave)[:num_frames]
    feats = F.pad(feats, (0, 0, 0, num_frames - feats.shape[0]))
    return F.layer_norm(feats, feats.shape)
