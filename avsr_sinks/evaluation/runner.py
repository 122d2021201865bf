"""Batched decoding of a split and the WER outputs (table + per-utterance CSV).

In a process group (DDP), every process decodes the shard its sampler gives it and the
transcripts are gathered, so that every process scores the whole split and rank 0 writes it.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..model.avsr import GenerationSettings, LlamaAVSR
from .wer import WERResult, corpus_wer


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def process_rank_and_count() -> tuple[int, int]:
    """(rank, number of processes) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_from_processes(local) -> list:
    """``local`` of every process, in rank order, on every process (``all_gather_object``)."""
    _, count = process_rank_and_count()
    if count == 1:
        return [local]
    gathered = [None] * count
    dist.all_gather_object(gathered, local)
    return gathered


@torch.no_grad()
def decode_batches(model: LlamaAVSR, loader, settings: GenerationSettings, desc: str = "decoding") -> list[tuple]:
    """(ids, references, hypotheses, at_token_limit) per batch of a DataLoader of collated batches."""
    model.eval()
    device = next(model.parameters()).device
    batches = []
    for batch in tqdm(loader, desc=desc, leave=False):
        if not batch["ids"]:  # every sample of the batch was bad (skipped)
            batches.append(([], [], [], []))
            continue
        hypotheses = model.generate_hypotheses(_to_device(batch, device), settings)
        batches.append((batch["ids"], batch["text"], hypotheses.texts, hypotheses.at_token_limit))
    return batches


def transcribe(model: LlamaAVSR, loader, settings: GenerationSettings, desc: str = "decoding") -> tuple[list, list, list]:
    """(ids, references, hypotheses) over a DataLoader of collated batches."""
    batches = decode_batches(model, loader, settings, desc)
    return tuple([item for batch in batches for item in batch[part]] for part in range(3))


def merge_shards(shards: list[list[tuple]]) -> list[tuple[str, str, str, bool]]:
    """One (id, reference, hypothesis, at_token_limit) per utterance from every process's batches.

    Rank r decodes batches r, r + R, ... of the split's batch list, so taking the k-th batch of
    every rank in turn restores that list's order (a single process's order, for an unshuffled
    sampler). An utterance met again (a batch repeated to give every rank as many) counts once.
    """
    merged, seen = [], set()
    for k in range(max(len(batches) for batches in shards)):
        for batches in shards:
            if k < len(batches):
                for utterance in zip(*batches[k]):
                    if utterance[0] not in seen:
                        seen.add(utterance[0])
                        merged.append(utterance)
    return merged


def write_utterance_csv(path: str | Path, result: WERResult) -> None:
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "reference", "hypothesis", "errors", "substitutions", "deletions", "insertions", "reference_words"])
        for u in result.utterances:
            writer.writerow([u.id, u.reference, u.hypothesis, u.errors, u.substitutions, u.deletions, u.insertions, u.reference_words])


def evaluate_loader(model: LlamaAVSR, loader, settings: GenerationSettings, out_dir: str | Path, tag: str) -> WERResult:
    """Decode, score and write ``<tag>_utterances.csv`` and ``<tag>_wer.json`` into out_dir.

    In a process group each process decodes its shard; every process returns the WER of the
    whole split and rank 0 writes the files. The result counts the utterances decoded, the bad
    samples skipped and the rows the dataset's length limits filtered out; decoded and skipped
    must make up the dataset.
    """
    shards = gather_from_processes({"batches": decode_batches(model, loader, settings, desc=f"decoding {tag}"),
                                    "skipped": list(getattr(loader.dataset, "skipped", []))})
    utterances = merge_shards([shard["batches"] for shard in shards])
    skipped = list(dict(item for shard in shards for item in shard["skipped"]).items())
    result = corpus_wer(*([u[part] for u in utterances] for part in range(3)))
    result.skipped = skipped
    result.filtered = int(getattr(loader.dataset, "n_filtered", 0))
    result.at_token_limit = sum(u[3] for u in utterances)
    # The dataset's rows, and those it left out as ones the model cannot take (listed in skipped).
    rows = len(loader.dataset) + len(getattr(loader.dataset, "unusable", [])) if hasattr(loader.dataset, "__len__") else None
    if rows is not None and len(utterances) + len(skipped) != rows:
        raise RuntimeError(f"{tag}: {len(utterances)} utterances decoded and {len(skipped)} skipped, but the split has "
                           f"{rows}: the loader's sampler does not cover the split exactly once")
    if process_rank_and_count()[0] == 0:
        if result.at_token_limit:
            warnings.warn(f"{tag}: {result.at_token_limit} of {len(utterances)} hypotheses stopped at generation.max_new_tokens="
                          f"{settings.max_new_tokens} before their end of sentence; raise generation.max_new_tokens", stacklevel=2)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_utterance_csv(out_dir / f"{tag}_utterances.csv", result)
        (out_dir / f"{tag}_wer.json").write_text(json.dumps(result.summary(), indent=2))
    return result
