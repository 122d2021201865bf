"""``data.feature_cache=DIR``: which (split, modality) may read cached encoder features, and
building those caches once before training (rank 0 builds; other ranks wait for it).

The cache is used only where it gives exactly what the live encoder would: the encoder is
frozen, and its input is neither augmented nor noised. Anywhere else the run says why it is off
and encodes live.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ..data import AVSRDataset, FrameBudgetBatchSampler, collate_samples
from ..data.feature_cache import (FeatureCache, build_feature_cache, cache_folder, encoder_fingerprint, is_frozen,
                                  wait_for_cache)
from ..data.media import SAMPLE_RATE, SAMPLES_PER_FRAME
from ..data.transforms import CROP_SIZE, VIDEO_MEAN, VIDEO_STD
from ..model.avsr import LlamaAVSR
from .datamodule import split_csv

ENCODER_KEYS = {"audio": "model.audio_encoder", "video": "model.video_encoder"}


def preprocessing(modality: str, root) -> dict:
    """What the encoder's input depends on besides the media files: the corpus root and the
    unaugmented transforms of :class:`~avsr_sinks.data.AVSRDataset`."""
    if modality == "audio":
        return {"modality": modality, "root": str(root), "sample_rate": SAMPLE_RATE,
                "samples_per_frame": SAMPLES_PER_FRAME}
    return {"modality": modality, "root": str(root), "center_crop": CROP_SIZE, "mean": VIDEO_MEAN, "std": VIDEO_STD}


def cache_off_reason(data: Mapping, split: str, modality: str, model: LlamaAVSR, noised: bool = False) -> str | None:
    """Why ``modality`` of ``split`` cannot come from the cache (None: it can)."""
    if not is_frozen(model.encoders[modality]):
        return f"its encoder trains ({ENCODER_KEYS[modality]}.trainable or .lora)"
    if split == "train" and data.get("augment", False):
        return "data.augment=true draws new masks and crops every epoch"
    if modality == "audio" and split == "train" and (data.get("train_noise") or {}).get("snr_db") is not None:
        return "data.train_noise adds new noise every epoch"
    if modality == "audio" and noised:
        return "noise is added to its audio (eval.snr)"
    return None


def _global_rank() -> int:
    # Set by Lightning's launcher for the processes it starts (and by torchrun), before any
    # process group exists; the first process has none of them and is rank 0.
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _build_device(trainer: Mapping) -> torch.device:
    wants_gpu = trainer.get("accelerator") in ("gpu", "cuda", "auto")
    return torch.device("cuda") if wants_gpu and torch.cuda.is_available() else torch.device("cpu")


def prepare_feature_caches(cfg: Mapping, model: LlamaAVSR, corpus: Mapping, splits: tuple[str, ...],
                           noised: bool = False, log=print) -> dict[str, dict[str, FeatureCache]]:
    """{split: {modality: cache}} for ``data.feature_cache``; builds what is missing (rank 0)."""
    data = cfg["data"]
    root_dir = data.get("feature_cache")
    if not root_dir:
        return {}
    usable: dict[str, list[str]] = {}
    for modality in model.modalities:
        for split in splits:
            reason = cache_off_reason(data, split, modality, model, noised)
            if reason:
                log(f"feature cache off for {modality} in {split}: {reason}; encoding it live")
            else:
                usable.setdefault(modality, []).append(split)
    caches: dict[str, dict[str, FeatureCache]] = {}
    for modality, cached_splits in usable.items():
        encoder = model.encoders[modality]
        fingerprint, description = encoder_fingerprint(encoder, preprocessing(modality, corpus["root"]))
        folder = cache_folder(root_dir, modality, fingerprint)
        datasets = [AVSRDataset(corpus["root"], split_csv(corpus, data, split), modalities=(modality,), split=split,
                                max_frames=data.get("max_frames_per_sample"),
                                max_transcript_chars=data.get("max_transcript_chars"),
                                strict=data.get("strict", False), augment=False) for split in cached_splits]
        if _global_rank() == 0:
            cache = _build(folder, fingerprint, description, modality, encoder, datasets, data, cfg["trainer"], log)
        else:
            cache = wait_for_cache(folder, fingerprint)
        for split in cached_splits:
            caches.setdefault(split, {})[modality] = cache
    return caches


def _build(folder: Path, fingerprint: str, description: dict, modality: str, encoder, datasets: list[AVSRDataset],
           data: Mapping, trainer: Mapping, log) -> FeatureCache:
    wanted = [row.utterance_id for dataset in datasets for row in dataset.rows]
    device = _build_device(trainer)
    home = next(encoder.parameters()).device

    def batches(done: set[str]):
        for dataset in datasets:
            todo = [i for i, row in enumerate(dataset.rows) if row.utterance_id not in done]
            sampler = FrameBudgetBatchSampler([dataset.lengths[i] for i in todo], data["eval_max_frames"],
                                              shuffle=False, num_replicas=1, rank=0)
            loader = DataLoader(Subset(dataset, todo), batch_sampler=sampler, collate_fn=collate_samples,
                                num_workers=int(data.get("num_workers", 0)))
            yield from loader

    def encode(batch: dict):
        inputs = {modality: batch[modality].to(device), f"{modality}_lengths": batch[f"{modality}_lengths"].to(device)}
        return encoder(**inputs)

    encoder.to(device)
    try:
        return build_feature_cache(folder, fingerprint, description, modality, encoder.output_dim, wanted,
                                   batches, encode, log=log)
    finally:
        encoder.to(home)
