"""LightningDataModule: the library's datasets, frame-budget batches and collation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from ..data import AVSRDataset, FrameBudgetBatchSampler, collate_samples
from ..data.synthetic import SyntheticCorpusConfig, ensure_synthetic_corpus


def resolve_corpus(data: Mapping) -> dict:
    """Root, label CSVs and (for the demo) the vocabulary of the configured corpus."""
    if data["kind"] == "synthetic":
        fields = {k: tuple(v) if k == "vocabulary" else v for k, v in dict(data["synthetic"]).items()}
        corpus = ensure_synthetic_corpus(
            Path(str(data["cache_dir"])).expanduser() / "synthetic", SyntheticCorpusConfig(**fields)
        )
        return {"root": corpus.root, "train_csv": corpus.train_csv, "val_csv": corpus.val_csv,
                "test_csv": corpus.test_csv, "vocabulary": list(corpus.vocabulary)}
    return {"root": data["root"], "train_csv": data["train_csv"], "val_csv": data["val_csv"],
            "test_csv": data["test_csv"], "vocabulary": None}


class AVSRDataModule(L.LightningDataModule):
    def __init__(self, data: Mapping, corpus: Mapping, modalities: tuple[str, ...], seed: int, noise=None) -> None:
        super().__init__()
        self.data = data
        self.corpus = corpus
        self.modalities = modalities
        self.seed = seed
        self.noise = noise
        self.datasets: dict[str, AVSRDataset] = {}

    def _dataset(self, split: str) -> AVSRDataset:
        if split not in self.datasets:
            self.datasets[split] = AVSRDataset(
                self.corpus["root"],
                self.corpus[f"{split}_csv"],
                modalities=self.modalities,
                split=split,
                max_frames=self.data.get("max_frames_per_sample"),
                max_transcript_chars=self.data.get("max_transcript_chars"),
                noise=self.noise if split != "train" else None,
                strict=self.data.get("strict", False),
                seed=self.seed,
                augment=self.data.get("augment", True) and split == "train",
            )
        return self.datasets[split]

    def _loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        train = split == "train"
        sampler = FrameBudgetBatchSampler(
            dataset.lengths,
            max_frames=self.data["max_frames"] if train else self.data["eval_max_frames"],
            shuffle=train,
            seed=self.seed,
        )
        workers = int(self.data.get("num_workers", 0))
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_samples, num_workers=workers,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def skipped_samples(self) -> dict[str, list]:
        """Bad samples met so far, per split (reported at the end of a run)."""
        return {split: ds.skipped for split, ds in self.datasets.items() if ds.skipped}
