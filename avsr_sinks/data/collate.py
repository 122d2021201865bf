"""Batching of dataset samples: zero padding at the end, skipped (None) samples dropped."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence


def collate_samples(samples: list[dict | None]) -> dict:
    """Stack samples into ``{"ids", "text", "<modality>", "<modality>_lengths"}``.

    ``audio`` becomes [B, S_max] and ``video`` [B, T_max, 88, 88]; absent modalities stay absent.
    Cached encoder features become ``<modality>_features`` [B, T_max, D] + ``<modality>_feature_lengths``.
    None entries (samples the dataset skipped) are dropped; an all-None batch gives B = 0.
    """
    samples = [s for s in samples if s is not None]
    batch = {"ids": [s["id"] for s in samples], "text": [s["text"] for s in samples]}
    for modality in ("audio", "video"):
        if samples and modality in samples[0]:
            tensors = [s[modality] for s in samples]
            batch[modality] = pad_sequence(tensors, batch_first=True)
            batch[f"{modality}_lengths"] = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
        if samples and f"{modality}_features" in samples[0]:  # cached encoder outputs [T, D]
            tensors = [s[f"{modality}_features"] for s in samples]
            batch[f"{modality}_features"] = pad_sequence(tensors, batch_first=True)
            batch[f"{modality}_feature_lengths"] = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    return batch
