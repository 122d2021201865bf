"""Data: label CSVs, media reading, transforms, noise, datasets and frame-budget batching."""

from .batching import FrameBudgetBatchSampler
from .collate import collate_samples
from .dataset import AVSRDataset, BadSampleError
from .manifest import LabelRow, read_label_csv, write_label_csv
from .noise import NoiseConfig, TrainNoiseConfig, add_noise
from .transforms import AugmentConfig

__all__ = ["AVSRDataset", "AugmentConfig", "BadSampleError", "FrameBudgetBatchSampler", "LabelRow", "NoiseConfig",
           "TrainNoiseConfig", "add_noise", "collate_samples", "read_label_csv", "write_label_csv"]
