"""Shared fixtures: a tiny random Llama saved to disk and loaded by the real path."""

import pytest
import torch
from torch import nn

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
