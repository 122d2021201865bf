"""LightningDataModule: the library's datasets, frame-budget batches and collation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..data import AVSRDataset, FrameBudgetBatchSampler, SampleLimits, TooManyBadSamplesError, TrainNoiseConfig, collate_samples
from ..data.batching import ResumableDataLoader
from ..data.espeak_corpus import EspeakCorpusConfig, ensure_espeak_corpus
from ..data.librivox import DEFAULT_SOURCE as LIBRIVOX_SOURCE
from ..data.librivox import ensure_librivox_corpus
from ..data.synthetic import SyntheticCorpusConfig, ensure_synthetic_corpus
from .config_validation import CORPUS_KINDS


LABEL_FILE_KEYS = ("root", "train_csv", "val_csv", "test_csv")


def resolve_corpus(data: Mapping) -> dict:
    """Root, label CSVs (None for a split the corpus lacks) and (for the demo) the vocabulary."""
    kind = data["kind"]
    given = [key for key in LABEL_FILE_KEYS if data.get(key) is not None]
    if kind != "lrs" and given:
        # Silently decoding the generated corpus instead of the files named would report the wrong set.
        raise ValueError(f"data.{given[0]}={data[given[0]]!r} is read only with a corpus of your own label files: "
                         f"data.kind={kind} generates its corpus from data.{kind}. To decode other label files, "
                         f"pass data=lrs3 data.root=<folder> data.test_csv=<csv>")
    if kind == "synthetic":
        fields = {k: tuple(v) if k == "vocabulary" else v for k, v in dict(data["synthetic"]).items()}
        corpus = ensure_synthetic_corpus(
            Path(str(data["cache_dir"])).expanduser() / "synthetic", SyntheticCorpusConfig(**fields)
        )
        return {"root": corpus.root, "train_csv": corpus.train_csv, "val_csv": corpus.val_csv,
                "test_csv": corpus.test_csv, "vocabulary": list(corpus.vocabulary)}
    if kind == "espeak":
        corpus = ensure_espeak_corpus(Path(str(data["cache_dir"])).expanduser() / "espeak",
                                      EspeakCorpusConfig(**dict(data.get("espeak") or {})),
                                      num_workers=os.cpu_count() or 1)
        return {"root": corpus.root, "train_csv": corpus.train_csv, "val_csv": corpus.val_csv,
                "test_csv": corpus.test_csv, "vocabulary": None}
    if kind == "librivox":
        corpus = ensure_librivox_corpus(Path(str(data["cache_dir"])).expanduser(),
                                        data.get("source") or LIBRIVOX_SOURCE)
        return {"root": corpus.root, "train_csv": None, "val_csv": None, "test_csv": corpus.test_csv,
                "vocabulary": None}
    if kind == "lrs":  # a split without its CSV (eval.py data.test_csv=... alone) is absent, not an error yet
        return {"root": data["root"], **{key: data.get(key) for key in LABEL_FILE_KEYS[1:]}, "vocabulary": None}
    raise ValueError(f"data.kind={kind!r}: choose one of {', '.join(CORPUS_KINDS)}")


def split_csv(corpus: Mapping, data: Mapping, split: str):
    """The label CSV of ``split``; a split the corpus lacks (LibriVox: test only) is an error naming the config."""
    label_csv = corpus.get(f"{split}_csv")
    if label_csv is None:
        kind = data["kind"]
        available = [name for name in ("train", "val", "test") if corpus.get(f"{name}_csv") is not None]
        raise ValueError(f"data={kind} has no {split} split: it is for evaluation (scripts/eval.py data={kind} ...; "
                         f"its splits: {', '.join(available)})")
    return label_csv


class AVSRDataModule(L.LightningDataModule):
    """The splits of a corpus; ``limits``: what the model can take (``LlamaAVSR.sample_limits``)."""

    def __init__(self, data: Mapping, corpus: Mapping, modalities: tuple[str, ...], seed: int, noise=None,
                 feature_caches: Mapping[str, Mapping] | None = None, limits: SampleLimits = SampleLimits()) -> None:
        """``feature_caches``: {split: {modality: FeatureCache}} (training.feature_caches)."""
        super().__init__()
        self.feature_caches = dict(feature_caches or {})
        self.data = data
        self.corpus = corpus
        self.modalities = modalities
        self.seed = seed
        self.noise = noise
        self.limits = limits
        self.datasets: dict[str, AVSRDataset] = {}
        self._train_loader: ResumableDataLoader | None = None
        self._train_position: dict | None = None  # from a checkpoint, for the next training loader

    def _dataset(self, split: str) -> AVSRDataset:
        if split not in self.datasets:
            self.datasets[split] = AVSRDataset(
                self.corpus["root"],
                split_csv(self.corpus, self.data, split),
                modalities=self.modalities,
                split=split,
                max_frames=self.data.get("max_frames_per_sample"),
                max_transcript_chars=self.data.get("max_transcript_chars"),
                noise=self.noise if split != "train" else None,
                train_noise=(TrainNoiseConfig.from_settings(self.data.get("train_noise"))
                             if "audio" in self.modalities else None),
                strict=self.data.get("strict", False),
                seed=self.seed,
                augment=self.data.get("augment", True) and split == "train",
                feature_caches=self.feature_caches.get(split),
                limits=self.limits,
                max_bad_fraction=self.data.get("max_bad_fraction"),
            )
        return self.datasets[split]

    def _loader(self, split: str) -> DataLoader:
        """Training: a loader whose position Lightning checkpoints, with samples keyed by (epoch,
        index) so their random draws are seeded per sample; evaluation: a plain one. Every loader
        has its own generator, so starting one (it draws the workers' base seed) leaves the global
        RNG, and with it dropout, as it was: a resumed run draws what the uninterrupted one did."""
        dataset = self._dataset(split)
        train = split == "train"
        sampler = FrameBudgetBatchSampler(
            dataset.lengths,
            max_frames=self.data["max_frames"] if train else self.data["eval_max_frames"],
            shuffle=train,
            seed=self.seed,
            epoch_in_keys=train,
        )
        workers = int(self.data.get("num_workers", 0))
        return (ResumableDataLoader if train else DataLoader)(
            dataset, batch_sampler=sampler, collate_fn=collate_samples, num_workers=workers,
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        self._train_loader = self._loader("train")
        if self._train_position is not None:
            self._train_loader.resume(self._train_position)
        return self._train_loader

    def state_dict(self) -> dict:
        """The training loader's position: Lightning saves it in every checkpoint, so a run resumed
        mid-epoch continues at the next batch. (Lightning's own saving of a stateful loader is not
        used: it never loads it back once ``estimated_stepping_batches`` has built the loader.)"""
        return {"train_position": self._train_loader.position()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._train_position = state_dict.get("train_position")
        if self._train_loader is not None and self._train_position is not None:
            self._train_loader.resume(self._train_position)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def transcripts(self, split: str) -> list[str]:
        """The transcripts of ``split`` (from its label CSV; no media is read)."""
        return [row.transcript for row in self._dataset(split).rows]

    def probe_batch(self, size: int = 2) -> dict:
        """The first ``size`` training samples that load, as one batch: one cheap forward for the
        checks made before training starts."""
        dataset = self._dataset("train")
        samples = []
        for index in range(len(dataset)):
            sample = dataset[index]
            if sample is not None:
                samples.append(sample)
            if len(samples) == size:
                break
        if not samples:
            raise ValueError(f"no training sample of {self.corpus.get('train_csv')} loads (see the warnings above)")
        return collate_samples(samples)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """After every batch, in the main process (the loaders' workers mark bad samples in shared
        memory): stop once a split's bad share passes data.max_bad_fraction. Every rank decides
        together, so that none is left waiting for the others."""
        world_size = self.trainer.world_size
        exceeded = [ds for ds in self.datasets.values() if ds.bad_share_exceeded(world_size)]
        if self.trainer.strategy.reduce_boolean_decision(bool(exceeded), all=False):
            raise TooManyBadSamplesError(exceeded[0].bad_share_report(world_size) if exceeded
                                         else "another rank's share of bad samples passed data.max_bad_fraction")
        return batch

    def skipped_samples(self) -> dict[str, list]:
        """Bad samples met so far, per split (reported at the end of a run)."""
        return {split: ds.skipped for split, ds in self.datasets.items() if ds.skipped}
