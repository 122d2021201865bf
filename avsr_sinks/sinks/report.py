"""Run every analysis on one sample and write the numbers (JSON/CSV) and figures (PNG).

The figures need matplotlib (``pip install 'avsr_sinks[plots]'``); without it the numbers are
written all the same and the figures are skipped, said once.
"""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import torch
from torch import nn

from .activations import massive_activations
from .attention_scores import attention_sink_scores
from .cosine import bos_cosine_similarity, pairwise_cosine
from .detection import SinkRule, first_valid_position, sink_mask
from .origin import residual_contributions
from .rotation import rotation_effect
from .streams import residual_streams
from .summary import summarize


def _write_matrix_csv(path: Path, matrix: torch.Tensor, labels: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", *labels])
        for layer, row in enumerate(matrix.tolist()):
            writer.writerow([layer, *row])


@cache
def _plots():
    """The plotting module, or None (said once) when matplotlib is not installed."""
    try:
        from . import plots
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != "matplotlib":
            raise
        print("sink report: figures skipped, matplotlib is not installed (pip install 'avsr_sinks[plots]')")
        return None
    return plots


def sink_report(model: nn.Module, token_labels: list[list[str]], out_dir: str | Path, sample: int = 0,
                attention_mask: torch.Tensor | None = None, rule: SinkRule = SinkRule(), tau: float = 1e3,
                **forward_inputs) -> dict:
    """Analyse ``model(**forward_inputs)`` for one sample; write files to ``out_dir``; return the summary.

    Files: ``summary.json``, ``alpha.csv`` and ``bos_cosine.csv`` (layers x tokens),
    ``contributions.csv``, ``rotation.json`` (strongest intermediate sink rotated towards its
    nearest non-sink at the layer before it appears; absent without an intermediate sink), and
    PNGs: ``alpha_heatmap``, ``activations``, ``alpha_per_layer``, ``contributions``,
    ``bos_cosine``, ``pairwise_cosine`` (and ``rotation``). Padding columns are dropped.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alpha = attention_sink_scores(model, attention_mask=attention_mask, **forward_inputs)
    streams = residual_streams(model, attention_mask=attention_mask, **forward_inputs)
    summary = summarize(alpha, streams, attention_mask, token_labels, sample, rule)
    batch, length = alpha.shape[1:]
    valid = torch.ones(length, dtype=torch.bool) if attention_mask is None else attention_mask[sample].bool().cpu()
    keep = valid.nonzero().flatten()
    labels = [token_labels[sample][i] for i in keep.tolist()]
    bos = int(first_valid_position(attention_mask, batch, length)[sample])

    sample_alpha = alpha[:, sample][:, keep].cpu()
    sample_streams = streams[:, sample][:, keep].float().cpu()
    cosine = bos_cosine_similarity(streams, attention_mask)[:, sample][:, keep].cpu()
    _write_matrix_csv(out / "alpha.csv", sample_alpha, labels)
    _write_matrix_csv(out / "bos_cosine.csv", cosine, labels)

    sinks = sink_mask(alpha, attention_mask, rule)[:, sample].any(0)  # sink at any layer
    origin_mask = torch.zeros(batch, length, dtype=torch.bool)
    origin_mask[sample] = sinks.cpu()
    origin = residual_contributions(model, origin_mask, attention_mask, **forward_inputs)
    with open(out / "contributions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(origin[0]))
        writer.writeheader()
        writer.writerows(origin)

    massive = massive_activations(streams[:, sample:sample + 1], valid[None].to(streams.device), tau=tau)
    top_layer = int(massive["top_ratio"][:, 0].argmax())
    effect = None
    if summary["intermediate_position"] is not None:
        appears = min(row["layer"] for row in summary["sink_positions"] if summary["intermediate_position"] in row["intermediate"])
        effect = rotation_effect(model, max(appears - 1, 0), summary["intermediate_position"], "nearest", sample,
                                 sinks.cpu(), attention_mask, tau, **forward_inputs)
        (out / "rotation.json").write_text(json.dumps(effect, indent=2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    plots = _plots()
    if plots is None:
        return summary
    plots.alpha_heatmap(sample_alpha.numpy(), labels, out / "alpha_heatmap.png")
    plots.activation_heatmap(sample_streams[top_layer].numpy(), labels, top_layer, out / "activations.png")
    named = {"BOS": bos}
    if summary["intermediate_position"] is not None:
        named[summary["intermediate_label"]] = summary["intermediate_position"]
    kept_index = {p: k for k, p in enumerate(keep.tolist())}
    plots.alpha_per_layer(sample_alpha.numpy(), {name: kept_index[p] for name, p in named.items()}, out / "alpha_per_layer.png")
    plots.contributions(origin, out / "contributions.png")
    intermediate = [kept_index[p] for p in sinks.nonzero().flatten().tolist() if p != bos]
    others = [k for k, p in enumerate(keep.tolist()) if p != bos and not sinks[p]]
    plots.cosine_across_layers(cosine.numpy(), intermediate, others, out / "bos_cosine.png")
    plots.pairwise_heatmap(pairwise_cosine(sample_streams[top_layer]).numpy(), labels, top_layer, out / "pairwise_cosine.png")
    if effect is not None:
        plots.rotation_before_after(effect, summary["intermediate_label"], out / "rotation.png")
    return summary
