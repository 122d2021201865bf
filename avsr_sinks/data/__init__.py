"""Data: label CSVs, media reading, transforms, noise, datasets and frame-budget batching.

The names below load on first use (PEP 562): the config check imports the corpus config
dataclasses of ``synthetic``, ``espeak_corpus`` and ``noise``, and must not pay for torch (several
seconds) before it can tell a user about a typo.
"""

from importlib import import_module

_MODULES = {
    "FrameBudgetBatchSampler": "batching",
    "collate_samples": "collate",
    "AVSRDataset": "dataset",
    "BadSampleError": "dataset",
    "TooManyBadSamplesError": "dataset",
    "SampleLimits": "limits",
    "LabelRow": "manifest",
    "read_label_csv": "manifest",
    "write_label_csv": "manifest",
    "NoiseConfig": "noise",
    "TrainNoiseConfig": "noise",
    "add_noise": "noise",
    "AugmentConfig": "transforms",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_MODULES[name]}", __name__), name)
