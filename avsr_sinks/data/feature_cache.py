"""Encoder feature cache: a frozen encoder's outputs (before the compressor), computed once.

A λ sweep trains the same frozen Whisper / AV-HuBERT on the same unaugmented inputs in every
step of every run; the cache stores each utterance's features once, in float16, and training
reads them instead of running the encoder.

Layout of one cache, ``<root>/<modality>-<fingerprint[:16]>/``:

- ``meta.json``: the full fingerprint, what it was computed from (encoder class, settings,
  preprocessing), the feature width, and ``complete`` once every utterance asked for is in;
- ``shard-NNNNN.npy`` ([frames, D] float16, memory-mapped when read) and ``shard-NNNNN.json``
  (ids, offsets and lengths in it). A shard's JSON is written last, by an atomic rename, so a
  build killed at any point leaves only whole shards; building again resumes after them.

The fingerprint hashes the encoder's class, its settings and config, every parameter and
buffer (name, dtype, shape, bytes) and the preprocessing description, so that a cache built by
another encoder, other weights or another preprocessing is never used: its folder has another
name, and a folder given directly whose fingerprint differs is refused.

Only torch and numpy here: the caller passes the encoder as a module (for its fingerprint) and
a function that encodes a collated batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

CACHE_VERSION = 1
META = "meta.json"
STORED_DTYPE = np.float16
SHARD_UTTERANCES = 512  # utterances a shard: what a killed build can lose


class FeatureCacheError(ValueError):
    """A cache that cannot be used as asked (another encoder's, incomplete, unreadable)."""


def _settings(module: nn.Module) -> dict:
    """Plain attributes and the config of ``module`` and its direct children: what, beside the
    weights, decides its output (e.g. ``pad_to_30s``, ``modality``, the HF or dataclass config)."""
    settings = {}
    for owner_name, owner in [("", module), *module.named_children()]:
        for key, value in vars(owner).items():
            if key.startswith("_") or key == "training":
                continue
            if isinstance(value, (bool, int, float, str)) or value is None:
                settings[f"{owner_name}.{key}" if owner_name else key] = value
            elif key == "config" and hasattr(value, "to_dict"):
                settings[f"{owner_name}.config" if owner_name else "config"] = value.to_dict()
            elif key == "config" and is_dataclass(value):
                settings[f"{owner_name}.config" if owner_name else "config"] = asdict(value)
    return settings


def encoder_fingerprint(encoder: nn.Module, preprocessing: Mapping) -> tuple[str, dict]:
    """(sha256 hex digest, the description it hashes besides the tensors)."""
    description = {"cache_version": CACHE_VERSION, "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
                   "settings": _settings(encoder), "preprocessing": dict(preprocessing)}
    digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode())
    tensors = dict(encoder.named_parameters())
    tensors.update(encoder.named_buffers())  # non-persistent ones too (Whisper's mel filters)
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest(), description


def is_frozen(encoder: nn.Module) -> bool:
    """No parameter trains (LoRA on an encoder, or ``trainable=True``, make it not frozen)."""
    return not getattr(encoder, "trainable", False) and not any(p.requires_grad for p in encoder.parameters())


def cache_folder(root: str | Path, modality: str, fingerprint: str) -> Path:
    """Where the cache of ``modality`` with this fingerprint lives under ``root``; ``root`` may
    also be such a folder itself (then its fingerprint must match, see :meth:`FeatureCache.open`)."""
    root = Path(root).expanduser()
    return root if (root / META).is_file() else root / f"{modality}-{fingerprint[:16]}"


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


class FeatureCache:
    """Read side of one cache folder: ``features(id)`` -> float16 [T, D]."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder, self.meta = folder, meta
        self.modality, self.dim = meta["modality"], int(meta["dim"])
        self._index: dict[str, tuple[int, int, int]] = {}
        self._shards: dict[int, np.ndarray] = {}
        for shard_json in sorted(folder.glob("shard-*.json")):
            shard = int(shard_json.stem.split("-")[1])
            entry = json.loads(shard_json.read_text())
            for utterance, offset, length in zip(entry["ids"], entry["offsets"], entry["lengths"]):
                self._index[utterance] = (shard, offset, length)

    @classmethod
    def open(cls, folder: str | Path, fingerprint: str, require_complete: bool = True) -> "FeatureCache":
        """Open ``folder``; refuse it when it was built by another encoder (fingerprint differs)."""
        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.is_file():
            raise FeatureCacheError(f"{folder} is not a feature cache (no {META}); build it first")
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != fingerprint:
            raise FeatureCacheError(
                f"{folder} was built by another encoder, other weights or other preprocessing "
                f"(fingerprint {str(meta.get('fingerprint'))[:16]}, this run's {fingerprint[:16]}; it was built from "
                f"{json.dumps(meta.get('description', {}).get('settings', {}))[:200]}); point data.feature_cache "
                f"at the parent folder, where this run's cache gets its own subfolder")
        if require_complete and not meta.get("complete"):
            raise FeatureCacheError(f"{folder} is incomplete (its build was interrupted); building again resumes it")
        return cls(folder, meta)

    def __contains__(self, utterance_id: str) -> bool:
        return utterance_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def features(self, utterance_id: str) -> torch.Tensor:
        """[T, D] float16 features of one utterance (a copy out of the memory-mapped shard)."""
        shard, offset, length = self._index[utterance_id]
        if shard not in self._shards:
            self._shards[shard] = np.load(self.folder / f"shard-{shard:05d}.npy", mmap_mode="r")
        return torch.from_numpy(np.array(self._shards[shard][offset:offset + length]))


def build_feature_cache(
    folder: Path,
    fingerprint: str,
    description: dict,
    modality: str,
    dim: int,
    wanted_ids: list[str],
    batches: Callable[[set[str]], Iterable[dict]],
    encode: Callable[[dict], tuple[torch.Tensor, torch.Tensor]],
    log: Callable[[str], None] = print,
) -> FeatureCache:
    """Encode every utterance of ``wanted_ids`` not yet in ``folder`` and store it.

    ``batches(done)`` yields collated batches (with ``ids``) of the utterances not in ``done``;
    ``encode(batch)`` returns (features [B, T, D], valid lengths [B]). Utterances that the batches
    never yield (bad samples, skipped by the dataset) are left out and listed in ``meta.json``.
    Progress is logged about every 30 s; a killed build resumes after its last whole shard.
    """
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / META
    meta = {"cache_version": CACHE_VERSION, "fingerprint": fingerprint, "description": description,
            "modality": modality, "dim": dim, "dtype": "float16", "complete": False}
    if meta_path.is_file():
        FeatureCache.open(folder, fingerprint, require_complete=False)  # refuses another encoder's folder
    _write_atomic(meta_path, lambda p: p.write_text(json.dumps(meta, indent=1)))
    cache = FeatureCache(folder, meta)
    done = set(cache._index)
    todo = [u for u in wanted_ids if u not in done]
    next_shard = 1 + max((int(p.stem.split("-")[1]) for p in folder.glob("shard-*.json")), default=-1)
    if todo:
        log(f"feature cache {folder}: encoding {len(todo)} of {len(wanted_ids)} utterances "
            f"({len(wanted_ids) - len(todo)} already cached)")
    pending: list[tuple[str, np.ndarray]] = []
    encoded, started, last_log = 0, time.perf_counter(), time.perf_counter()

    def flush() -> None:
        nonlocal next_shard, pending
        if not pending:
            return
        arrays = [a for _, a in pending]
        lengths = [len(a) for a in arrays]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
        _write_atomic(folder / f"shard-{next_shard:05d}.npy",
                      lambda p: np.save(p.open("wb"), np.concatenate(arrays).astype(STORED_DTYPE)))
        entry = {"ids": [u for u, _ in pending], "offsets": offsets, "lengths": lengths}
        _write_atomic(folder / f"shard-{next_shard:05d}.json", lambda p: p.write_text(json.dumps(entry)))
        next_shard, pending = next_shard + 1, []

    with torch.no_grad():
        for batch in batches(done):
            if not batch["ids"]:
                continue
            features, lengths = encode(batch)
            features = features.float().cpu().numpy()
            for i, utterance in enumerate(batch["ids"]):
                pending.append((utterance, features[i, : int(lengths[i])]))
            encoded += len(batch["ids"])
            if len(pending) >= SHARD_UTTERANCES:
                flush()
            if time.perf_counter() - last_log > 30:
                rate = encoded / (time.perf_counter() - started)
                log(f"feature cache {folder.name}: {encoded}/{len(todo)} utterances ({rate:.1f}/s)")
                last_log = time.perf_counter()
    flush()
    cache = FeatureCache(folder, meta)  # every shard, the ones written before a resume included
    meta["complete"] = True
    meta["missing"] = sorted(u for u in wanted_ids if u not in cache)
    _write_atomic(meta_path, lambda p: p.write_text(json.dumps(meta, indent=1)))
    if todo:
        log(f"feature cache {folder.name}: {encoded} utterances encoded in {time.perf_counter() - started:.1f} s"
            + (f"; {len(meta['missing'])} bad samples left out" if meta["missing"] else ""))
    return cache


def wait_for_cache(folder: Path, fingerprint: str, timeout_s: float = 24 * 3600, poll_s: float = 5.0) -> FeatureCache:
    """On a rank that does not build: wait until rank 0 has completed the cache, then open it."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta_path = folder / META
        if meta_path.is_file() and json.loads(meta_path.read_text()).get("complete"):
            return FeatureCache.open(folder, fingerprint)
        if time.monotonic() > deadline:
            raise FeatureCacheError(f"{folder}: rank 0 did not complete the feature cache within {timeout_s:.0f} s")
        time.sleep(poll_s)
