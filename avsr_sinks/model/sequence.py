"""Assembly of the LLM input sequence (DESIGN.md §2), per sample, then padded.

    [BOS] <audio> A_1..A_n </audio> <video> V_1..V_m </video> prompt | transcript [EOS]

A modality block is present only when the task uses it. Training batches are right-padded
and carry labels (-100 everywhere before the transcript); generation batches stop after the
prompt and are left-padded, as HF ``generate`` on ``inputs_embeds`` needs. Position ids count
real tokens only, so a sample's positions do not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .llm import SpecialTokenIds

IGNORE_INDEX = -100


@dataclass
class ModalityTokens:
    """Projected features of one modality: ``features [B, T, D]``, valid ``lengths [B]``."""

    features: torch.Tensor
    lengths: torch.Tensor


@dataclass
class AssembledInputs:
    inputs_embeds: torch.Tensor  # [B, N, D]
    attention_mask: torch.Tensor  # [B, N] long, 1 = real token
    position_ids: torch.Tensor  # [B, N]
    labels: torch.Tensor  # [B, N], IGNORE_INDEX outside transcript + EOS
    token_labels: list[list[str]]  # readable name of every position ('BOS', 'audio[3]', ..., 'PAD')

    @property
    def prefix_mask(self) -> torch.Tensor:
        """Real tokens before the transcript (BOS, modality blocks, prompt)."""
        return self.attention_mask.bool() & (self.labels == IGNORE_INDEX)


def _sample_layout(
    special: SpecialTokenIds,
    modality_lengths: dict[str, int],
    prompt_ids: list[int],
    transcript_ids: list[int] | None,
) -> tuple[list[int], list[str], list[str | None], int]:
    """Token ids (0 where a modality feature goes), labels, modality per position, and the
    index where the transcript starts."""
    ids, names, slots = [special.bos], ["BOS"], [None]
    delimiters = {"audio": (special.audio_start, special.audio_end), "video": (special.video_start, special.video_end)}
    for modality in ("audio", "video"):
        if modality not in modality_lengths:
            continue
        start, end = delimiters[modality]
        n = modality_lengths[modality]
        ids += [start] + [0] * n + [end]
        names += [f"<{modality}>"] + [f"{modality}[{i}]" for i in range(n)] + [f"</{modality}>"]
        slots += [None] + [modality] * n + [None]
    ids += prompt_ids
    names += [f"prompt[{i}]" for i in range(len(prompt_ids))]
    slots += [None] * len(prompt_ids)
    transcript_start = len(ids)
    if transcript_ids is not None:
        ids += transcript_ids + [special.eos]
        names += [f"text[{i}]" for i in range(len(transcript_ids))] + ["EOS"]
        slots += [None] * (len(transcript_ids) + 1)
    return ids, names, slots, transcript_start


def assemble_sequences(
    embed: Callable[[torch.Tensor], torch.Tensor],
    special: SpecialTokenIds,
    modalities: dict[str, ModalityTokens],
    prompt_ids: list[int],
    transcript_ids: list[list[int]] | None = None,
    padding_side: str = "right",
) -> AssembledInputs:
    """Build padded LLM inputs for a batch.

    Args:
        embed: the LLM's input embedding (ids -> vectors).
        special: ids of BOS, EOS, pad and the modality delimiters.
        modalities: ``{"audio": ModalityTokens, "video": ModalityTokens}`` (a subset).
        prompt_ids: the instruction's token ids (no special tokens).
        transcript_ids: per sample, the transcript's ids (training); None for generation.
        padding_side: "right" (training) or "left" (generation).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    batch = next(iter(modalities.values())).features.shape[0]
    layouts = []
    for b in range(batch):
        lengths = {m: int(tokens.lengths[b]) for m, tokens in modalities.items()}
        layouts.append(_sample_layout(special, lengths, prompt_ids, None if transcript_ids is None else transcript_ids[b]))
    longest = max(len(ids) for ids, *_ in layouts)
    device = next(iter(modalities.values())).features.device

    ids = torch.full((batch, longest), special.pad, dtype=torch.long)
    attention_mask = torch.zeros((batch, longest), dtype=torch.long)
    labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)
    slot_masks = {m: torch.zeros((batch, longest), dtype=torch.bool) for m in modalities}
    token_labels = []
    for b, (sample_ids, names, slots, transcript_start) in enumerate(layouts):
        n = len(sample_ids)
        offset = longest - n if padding_side == "left" else 0
        span = slice(offset, offset + n)
        ids[b, span] = torch.tensor(sample_ids)
        attention_mask[b, span] = 1
        if transcript_ids is not None:
            labels[b, offset + transcript_start : offset + n] = ids[b, offset + transcript_start : offset + n]
        for i, slot in enumerate(slots):
            if slot is not None:
                slot_masks[slot][b, offset + i] = True
        pads = ["PAD"] * (longest - n)
        token_labels.append(pads + names if padding_side == "left" else names + pads)

    ids, attention_mask, labels = ids.to(device), attention_mask.to(device), labels.to(device)
    inputs_embeds = embed(ids)
    for modality, tokens in modalities.items():
        valid = torch.arange(tokens.features.shape[1], device=device)[None, :] < tokens.lengths[:, None]
        mask = slot_masks[modality].to(device).unsqueeze(-1)
        inputs_embeds = inputs_embeds.masked_scatter(mask, tokens.features[valid].to(inputs_embeds.dtype))
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp_min(0)
    return AssembledInputs(inputs_embeds, attention_mask, position_ids, labels, token_labels)
