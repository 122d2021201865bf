"""Which tokens are attention sinks: an explicit rule on the Eq. 5 scores, and token labels.

Default rule: token i is a sink at layer l when alpha_i^l > ``ratio`` x the mean alpha of the
sample's valid tokens at that layer (ratio = 5), and, if ``min_alpha`` is given, also
alpha_i^l >= ``min_alpha``. The first valid position is the BOS sink; the others are
intermediate sinks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SinkRule:
    """Sink when alpha > ratio * mean valid alpha of the layer (and >= min_alpha if set)."""

    ratio: float = 5.0
    min_alpha: float | None = None


def sink_mask(alpha: torch.Tensor, attention_mask: torch.Tensor | None = None, rule: SinkRule = SinkRule()) -> torch.Tensor:
    """Boolean ``[L, B, N]``: where the rule calls a token a sink (padding never is)."""
    valid = torch.ones(alpha.shape[1:], dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    valid = valid.to(alpha.device)
    mean = (alpha * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
    sinks = (alpha > rule.ratio * mean) & valid
    if rule.min_alpha is not None:
        sinks &= alpha >= rule.min_alpha
    return sinks


def first_valid_position(attention_mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
    """Index of BOS per sample: the first non-padding position (``[B]``)."""
    if attention_mask is None:
        return torch.zeros(batch, dtype=torch.long)
    if not attention_mask.bool().any(-1).all():
        raise ValueError("attention_mask has a sample with no valid token")
    return attention_mask.bool().long().argmax(-1)


def sink_positions(alpha: torch.Tensor, attention_mask: torch.Tensor | None = None, rule: SinkRule = SinkRule(),
                   sample: int = 0) -> list[dict]:
    """Per layer of one sample: ``{"layer", "bos_is_sink", "intermediate": [positions]}``."""
    sinks = sink_mask(alpha, attention_mask, rule)[:, sample]
    bos = int(first_valid_position(attention_mask, alpha.shape[1], alpha.shape[2])[sample])
    rows = []
    for layer, row in enumerate(sinks):
        positions = row.nonzero().flatten().tolist()
        rows.append({"layer": layer, "bos_is_sink": bos in positions, "intermediate": [p for p in positions if p != bos]})
    return rows


def text_token_labels(tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[list[str]]:
    """Readable labels for plain text: 'BOS' at the first valid position, 'PAD', else the decoded token."""
    labels = []
    bos = first_valid_position(attention_mask, *input_ids.shape)
    for b, ids in enumerate(input_ids.tolist()):
        row = []
        for i, token in enumerate(ids):
            if attention_mask is not None and not attention_mask[b, i]:
                row.append("PAD")
            elif i == bos[b]:
                row.append("BOS")
            else:
                row.append(tokenizer.decode([token]).strip() or repr(tokenizer.decode([token])))
        labels.append(row)
    return labels
