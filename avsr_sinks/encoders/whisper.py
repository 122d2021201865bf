"""Frozen Whisper audio encoder: raw 16 kHz audio -> 50 Hz features plus valid lengths.

Two modes:
- ``pad_to_30s=True`` (paper / reference): every sample is padded to 30 s, the 1500-frame
  window is encoded exactly as in pretraining, and the frames covering the real audio are kept.
- ``pad_to_30s=False``: only the longest real audio of the batch is encoded; the position
  table is used for the first T rows only, and padded frames are masked out of self-attention
  (transformers' Whisper encoder ignores ``attention_mask``, so the layers are run here).
  Each sample's features equal those of the sample encoded alone: its log-mel is computed on
  its own samples, and the two convolutions see zeros past its end, as a lone sample's
  convolution padding (so a feature cache built in any batches equals the live encoder).

``num_layers`` keeps only the first N transformer layers and returns their output (the residual
stream, without the final LayerNorm, which belongs to the last layer's output); None keeps all.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from .frozen import FrozenEncoder

SAMPLE_RATE = 16_000
MAX_SAMPLES = 30 * SAMPLE_RATE


class WhisperEncoder(FrozenEncoder):
    """Whisper's encoder on raw audio; see the module docstring for the two modes."""

    frame_rate = 50

    def __init__(self, config: WhisperConfig, pad_to_30s: bool = True, trainable: bool = False,
                 num_layers: int | None = None) -> None:
        super().__init__(trainable)
        self._setup(HFWhisperEncoder(config), WhisperFeatureExtractor(feature_size=config.num_mel_bins), pad_to_30s,
                    num_layers)

    @classmethod
    def from_pretrained(cls, path_or_hub_name: str, pad_to_30s: bool = True, trainable: bool = False,
                        dtype: torch.dtype | None = None, num_layers: int | None = None) -> "WhisperEncoder":
        """Load the encoder of any HF Whisper checkpoint (tiny..large-v3) and its feature extractor."""
        model = WhisperModel.from_pretrained(path_or_hub_name, dtype=dtype)
        lacks_extractor = os.path.isdir(path_or_hub_name) and not os.path.isfile(
            os.path.join(path_or_hub_name, "preprocessor_config.json"))
        if lacks_extractor:
            extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        else:
            extractor = WhisperFeatureExtractor.from_pretrained(path_or_hub_name)
        if extractor.feature_size != model.config.num_mel_bins:
            raise ValueError(
                f"{path_or_hub_name}: preprocessor_config.json has feature_size={extractor.feature_size} but "
                f"config.json has num_mel_bins={model.config.num_mel_bins}; fix the checkpoint folder")
        encoder = cls.__new__(cls)
        FrozenEncoder.__init__(encoder, trainable)
        encoder._setup(model.encoder, extractor, pad_to_30s, num_layers)
        return encoder

    def _setup(self, hf_encoder: HFWhisperEncoder, extractor: WhisperFeatureExtractor, pad_to_30s: bool,
               num_layers: int | None) -> None:
        if extractor.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"Whisper feature extractor expects {extractor.sampling_rate} Hz; this project feeds 16 kHz")
        layers = len(hf_encoder.layers)
        if num_layers is not None and not 1 <= num_layers <= layers:
            raise ValueError(f"model.audio_encoder.num_layers={num_layers}: this Whisper encoder has {layers} layers; "
                             f"give 1..{layers}, or null for all of them")
        if num_layers is not None and num_layers < layers:
            # Cut, not skipped: the dropped layers' weights and config leave the feature cache's
            # fingerprint, so a cut encoder's cache differs from the whole one's, which stays as it was.
            hf_encoder.layers = hf_encoder.layers[:num_layers]
            hf_encoder.layer_norm = nn.Identity()
            hf_encoder.config.encoder_layers = num_layers
        self.encoder = hf_encoder
        self.pad_to_30s = pad_to_30s
        self.n_fft = extractor.n_fft
        self.hop_length = extractor.hop_length
        self.register_buffer("mel_filters", torch.from_numpy(extractor.mel_filters).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.freeze_unless_trainable()

    @property
    def output_dim(self) -> int:
        return self.encoder.config.d_model

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, S] float audio -> [B, n_mels, S // hop] log-mel, as WhisperFeatureExtractor (no dither)."""
        # float32 throughout, also when the module was cast to bf16 (trainer.precision=bf16-true).
        stft = torch.stft(audio.float(), self.n_fft, self.hop_length, window=self.window.float(), return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = (self.mel_filters.float().T @ power).clamp(min=1e-10).log10()
        per_sample_max = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, per_sample_max - 8.0) + 4.0) / 4.0

    def frame_lengths(self, audio_lengths: torch.Tensor) -> torch.Tensor:
        """Valid encoder frames per sample: mel frames (hop 160), then the stride-2 conv (k=3, pad=1)."""
        mel_frames = audio_lengths // self.hop_length
        return (mel_frames + 1) // 2

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, S] raw 16 kHz zero-padded at the end, audio_lengths [B] valid samples.

        Returns features [B, T, D] at 50 Hz (T = the longest valid length) and valid frames [B].
        """
        longest = int(audio_lengths.max())
        if longest > MAX_SAMPLES:
            raise ValueError(f"Whisper audio is at most 30 s ({MAX_SAMPLES} samples); got {longest} samples: "
                             "cut or split the utterance")
        lengths = self.frame_lengths(audio_lengths.to(audio.device))
        if int(lengths.min()) < 1:
            raise ValueError(f"every sample needs at least {self.hop_length} samples of audio "
                             f"(one encoder frame); got lengths {audio_lengths.tolist()}")
        with self.grad_context():
            if self.pad_to_30s:
                audio = F.pad(audio[:, :MAX_SAMPLES], (0, MAX_SAMPLES - min(audio.shape[1], MAX_SAMPLES)))
                features = self._encode(self.log_mel(audio).to(self.encoder.conv1.weight.dtype), None, None)
            else:
                mel_lengths = audio_lengths.to(audio.device) // self.hop_length
                mel = self._log_mel_each(audio, audio_lengths).to(self.encoder.conv1.weight.dtype)
                features = self._encode(mel, _frame_mask(lengths, (mel.shape[-1] + 1) // 2),
                                        _frame_mask(mel_lengths, mel.shape[-1]))
        return features[:, : int(lengths.max())], lengths

    def _log_mel_each(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, longest // hop]: each sample's log-mel of its own samples, zeros after it."""
        mels = [self.log_mel(audio[i: i + 1, : int(n)])[0] for i, n in enumerate(audio_lengths.tolist())]
        longest = max(m.shape[-1] for m in mels)
        return torch.stack([F.pad(m, (0, longest - m.shape[-1])) for m in mels])

    def _encode(self, mel: torch.Tensor, frame_mask: torch.Tensor | None,
                mel_mask: torch.Tensor | None) -> torch.Tensor:
        """transformers' encoder forward, for any length <= 1500 frames and with a key padding mask.
        ``mel_mask`` [B, n_mel_frames] (True on valid frames) zeroes the first convolution's output
        past each sample's end, so the second one sees what a lone sample's padding gives it."""
        enc = self.encoder
        x = F.gelu(enc.conv1(mel))
        if mel_mask is not None:
            x = x * mel_mask[:, None, :].to(x.dtype)
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        x = F.dropout(x, p=enc.dropout, training=enc.training)
        attention_mask = None
        if frame_mask is not None:
            # Additive [B, 1, T, T] mask: padded keys get the dtype's minimum, as HF layers expect.
            blocked = torch.finfo(x.dtype).min
            keys = torch.zeros(frame_mask.shape, dtype=x.dtype, device=x.device).masked_fill(~frame_mask, blocked)
            attention_mask = keys[:, None, None, :].expand(-1, 1, x.shape[1], -1)
        for layer in enc.layers:
            if enc.training and enc.layerdrop > 0.0 and torch.rand([]) < enc.layerdrop:
                continue
            x = layer(x, attention_mask)
        return enc.layer_norm(x)


def _frame_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B, T] bool, True on valid frames."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]
