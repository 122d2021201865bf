"""PNG figures like the paper's Fig. 1-4 (matplotlib, Agg backend). Each function writes one file."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _tick_labels(ax, labels: list[str], max_ticks: int = 40) -> None:
    """Token labels on the x axis, thinned to at most ``max_ticks`` so they stay readable."""
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    ticks = list(range(0, len(labels), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks], rotation=90, fontsize=7)


def _save(fig, path: Path) -> Path:
    for ax in fig.axes:  # layers are whole numbers
        if ax.get_xlabel() == "layer":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_ylabel() == "layer":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def alpha_heatmap(alpha: np.ndarray, labels: list[str], path: Path) -> Path:
    """Eq. 5 scores ``[L, N]`` as a layers x tokens heatmap."""
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(labels)), 0.3 * alpha.shape[0] + 2.5))
    image = ax.imshow(alpha, aspect="auto", cmap="viridis", interpolation="nearest")
    _tick_labels(ax, labels)
    ax.set_xlabel("token")
    ax.set_ylabel("layer")
    ax.set_title("Attention-sink score alpha (Eq. 5)")
    fig.colorbar(image, ax=ax, label="alpha")
    return _save(fig, path)


def activation_heatmap(states: np.ndarray, labels: list[str], layer: int, path: Path) -> Path:
    """|H| at one layer, tokens x features ``[N, D]``, log colour scale."""
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(labels)), 4.5))
    image = ax.imshow(np.log10(np.abs(states).T + 1e-6), aspect="auto", cmap="magma", interpolation="nearest")
    _tick_labels(ax, labels)
    ax.set_xlabel("token")
    ax.set_ylabel("feature")
    ax.set_title(f"Activation magnitude log10|H| at layer {layer}")
    fig.colorbar(image, ax=ax, label="log10 |H|")
    return _save(fig, path)


def alpha_per_layer(alpha: np.ndarray, positions: dict[str, int], path: Path) -> Path:
    """alpha across layers for the named sink tokens (``label -> position``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, position in positions.items():
        ax.plot(alpha[:, position], marker="o", label=label)
    ax.set_xlabel("layer")
    ax.set_ylabel("alpha")
    ax.set_title("Sink score per layer")
    ax.legend(fontsize=8)
    return _save(fig, path)


def contributions(rows: list[dict], path: Path) -> Path:
    """Attention vs MLP output norms per layer, at sink and non-sink tokens (log scale)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    layers = [row["layer"] for row in rows]
    for key, style in (("attn_norm_sink", "-o"), ("mlp_norm_sink", "-s"), ("attn_norm_other", "--o"), ("mlp_norm_other", "--s")):
        ax.plot(layers, [row[key] for row in rows], style, label=key.replace("_norm_", " @ ").replace("other", "non-sink"))
    ax.set_yscale("symlog", linthresh=1e-2)  # zero contributions stay visible
    ax.set_xlabel("layer")
    ax.set_ylabel("mean ||block output||")
    ax.set_title("Attention vs MLP contribution to the residual stream")
    ax.legend(fontsize=8)
    return _save(fig, path)


def cosine_across_layers(cosine: np.ndarray, sinks: list[int], others: list[int], path: Path) -> Path:
    """Mean cosine with BOS per layer ``cosine [L, N]`` for sink and non-sink tokens."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, positions in (("intermediate sinks", sinks), ("non-sink tokens", others)):
        if positions:
            ax.plot(cosine[:, positions].mean(1), marker="o", label=name)
    ax.set_xlabel("layer")
    ax.set_ylabel("cosine with BOS")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("Cosine similarity with BOS (Eq. 7)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pairwise_heatmap(matrix: np.ndarray, labels: list[str], layer: int, path: Path) -> Path:
    """Pairwise cosine ``[N, N]`` at one layer."""
    size = max(5, 0.2 * len(labels))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="coolwarm", vmin=-1, vmax=1, interpolation="nearest")
    _tick_labels(ax, labels)
    step = max(1, int(np.ceil(len(labels) / 40)))
    ax.set_yticks(range(0, len(labels), step))
    ax.set_yticklabels(labels[::step], fontsize=7)
    ax.set_title(f"Pairwise cosine similarity at layer {layer}")
    fig.colorbar(image, ax=ax, label="cosine")
    return _save(fig, path)


def rotation_before_after(effect: dict, label: str, path: Path) -> Path:
    """alpha and max |H|/median of the rotated token per layer, before and after (Eq. 8/9)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for side in ("before", "after"):
        left.plot(effect[side]["alpha"], marker="o", label=side)
        right.plot(effect[side]["max_ratio"], marker="o", label=side)
    left.set_ylabel("alpha")
    right.set_ylabel("max |H| / median |H|")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("layer")
        ax.axvline(effect["layer"], color="grey", linestyle=":")
        ax.legend(fontsize=8)
    fig.suptitle(f"Rotating {label} at layer {effect['layer']} towards {effect['towards']} (token {effect['target']})")
    return _save(fig, path)
