"""The headline numbers of one sample: BOS alpha, strongest intermediate sink, max |H|/median, cosine with BOS."""

from __future__ import annotations

import torch
from torch import nn

from .activations import massive_activations
from .attention_scores import attention_sink_scores
from .cosine import bos_cosine_similarity
from .detection import SinkRule, first_valid_position, sink_positions
from .streams import residual_streams


def summarize(alpha: torch.Tensor, streams: torch.Tensor, attention_mask: torch.Tensor | None = None,
              token_labels: list[list[str]] | None = None, sample: int = 0, rule: SinkRule = SinkRule()) -> dict:
    """Summary of one sample from ``alpha [L, B, N]`` and residual ``streams [L, B, N, D]``.

    ``bos_alpha``: mean over layers of BOS's alpha; ``intermediate_alpha`` / ``_label`` /
    ``_layer`` / ``_position``: the largest alpha of a detected intermediate sink (0 and None when
    there is none); ``max_activation_ratio``: max over layers of max valid |H| / median |H|;
    ``mean_bos_cosine``: mean cosine with BOS over layers and valid non-BOS tokens;
    ``sink_positions``: the per-layer rows of :func:`sink_positions`.
    """
    batch, length = alpha.shape[1:]
    bos = int(first_valid_position(attention_mask, batch, length)[sample])
    valid = torch.ones(length, dtype=torch.bool) if attention_mask is None else attention_mask[sample].bool()
    labels = token_labels[sample] if token_labels is not None else [str(i) for i in range(length)]
    if len(labels) != length:
        raise ValueError(f"token_labels[{sample}] has {len(labels)} labels for {length} positions")
    rows = sink_positions(alpha, attention_mask, rule, sample)
    best = (0.0, None, None)
    for row in rows:
        for position in row["intermediate"]:
            value = alpha[row["layer"], sample, position].item()
            if value > best[0]:
                best = (value, row["layer"], position)
    massive = massive_activations(streams[:, sample:sample + 1], valid[None])
    cosine = bos_cosine_similarity(streams[:, sample:sample + 1], valid[None])[:, 0]
    others = valid.clone()
    others[bos] = False
    return {
        "bos_alpha": alpha[:, sample, bos].mean().item(),
        "intermediate_alpha": best[0],
        "intermediate_layer": best[1],
        "intermediate_position": best[2],
        "intermediate_label": None if best[2] is None else labels[best[2]],
        "max_activation_ratio": massive["top_ratio"][:, 0].max().item(),
        "mean_bos_cosine": cosine[:, others].mean().item() if others.any() else float("nan"),
        "sink_positions": rows,
    }


def sink_summary(model: nn.Module, attention_mask: torch.Tensor | None = None,
                 token_labels: list[list[str]] | None = None, sample: int = 0, rule: SinkRule = SinkRule(),
                 **forward_inputs) -> dict:
    """:func:`summarize` after running ``model`` on ``forward_inputs`` (two no-grad passes)."""
    alpha = attention_sink_scores(model, attention_mask=attention_mask, **forward_inputs)
    streams = residual_streams(model, attention_mask=attention_mask, **forward_inputs)
    return summarize(alpha, streams, attention_mask, token_labels, sample, rule)
