"""Batched decoding of a split and the WER outputs (table + per-utterance CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from tqdm import tqdm

from ..model.avsr import GenerationSettings, LlamaAVSR
from .wer import WERResult, corpus_wer


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def transcribe(model: LlamaAVSR, loader, settings: GenerationSettings, desc: str = "decoding") -> tuple[list, list, list]:
    """(ids, references, hypotheses) over a DataLoader of collated batches."""
    model.eval()
    device = next(model.parameters()).device
    ids, refs, hyps = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False):
        if not batch["ids"]:  # every sample of the batch was skipped (bad files)
            continue
        hyps += model.generate(_to_device(batch, device), settings)
        ids += batch["ids"]
        refs += batch["text"]
    return ids, refs, hyps


def write_utterance_csv(path: str | Path, result: WERResult) -> None:
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "reference", "hypothesis", "errors", "substitutions", "deletions", "insertions", "reference_words"])
        for u in result.utterances:
            writer.writerow([u.id, u.reference, u.hypothesis, u.errors, u.substitutions, u.deletions, u.insertions, u.reference_words])


def evaluate_loader(model: LlamaAVSR, loader, settings: GenerationSettings, out_dir: str | Path, tag: str) -> WERResult:
    """Decode, score and write ``<tag>_utterances.csv`` and ``<tag>_wer.json`` into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = corpus_wer(*transcribe(model, loader, settings, desc=f"decoding {tag}"))
    write_utterance_csv(out_dir / f"{tag}_utterances.csv", result)
    (out_dir / f"{tag}_wer.json").write_text(json.dumps(result.summary(), indent=2))
    return result
