"""Shared fixtures: a tiny random Llama saved to disk and loaded by the real path."""

import pytest
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from avsr_sinks.model.llm import LoraSettings, load_llm
from avsr_sinks.model.tiny_llm import build_tiny_llm

WORDS = ["one", "two", "three", "four", "red", "blue"]


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory):
    return build_tiny_llm(tmp_path_factory.mktemp("tiny_llm"), WORDS, hidden_size=32, num_layers=4,
                          num_heads=4, num_kv_heads=2, intermediate_size=64, seed=0)


@pytest.fixture
def tiny_llm(tiny_llm_dir):
    torch.manual_seed(0)
    return load_llm(tiny_llm_dir, LoraSettings(rank=4, alpha=8, dropout=0.0))


class FrameEncoder(nn.Module):
    """A stand-in encoder: one feature vector per `hop` input values, a Linear on top.

    Input ``[B, S]`` (audio) or ``[B, T, H, W]`` (video); output lengths = valid // hop.
    """

    def __init__(self, modality: str, hop: int, dim: int = 12) -> None:
        super().__init__()
        self.modality, self.hop, self.output_dim = modality, hop, dim
        self.proj = nn.Linear(1, dim)

    def forward(self, **inputs):
        x = inputs[self.modality]
        lengths = inputs[f"{self.modality}_lengths"]
        if x.dim() > 2:  # video: one value per frame
            x = x.flatten(2).mean(-1)
            frames = x
            lengths = lengths // self.hop
        else:
            t = x.shape[1] // self.hop
            frames = x[:, : t * self.hop].reshape(x.shape[0], t, self.hop).mean(-1)
            lengths = lengths // self.hop
        return self.proj(frames.unsqueeze(-1)), lengths


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A tiny random Whisper (dropout and layerdrop on, to show that frozen encoders ignore them), saved
    with its feature extractor and loaded by the real path."""
    torch.manual_seed(0)
    config = WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
                           vocab_size=100, max_target_positions=16, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[],
                           dropout=0.3, encoder_layerdrop=0.5)
    path = tmp_path_factory.mktemp("whisper")
    WhisperModel(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path
