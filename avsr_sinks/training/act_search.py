"""ACT head selection for a trained checkpoint, scored by WER on a dev split (greedy, budgeted)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..evaluation.runner import transcribe
from ..evaluation.wer import corpus_wer
from ..sinks.baselines import apply_act, default_candidates, greedy_head_search
from .checkpoints import load_trained_model
from .evaluate import _device, generation_settings, split_loader


def search_act_heads(cfg: Mapping):
    """Greedy search (``greedy_head_search``) over the heads of ``cfg['layers']`` (0-indexed; null:
    layers 2..L-2) for the ACT head list with the lowest WER on ``cfg['split']``; writes the head
    file ``cfg['output']`` that ``eval.py act.heads_file=...`` reads."""
    overrides = {k: v for k, v in cfg["data"].items() if v is not None}
    model, config = load_trained_model(cfg["ckpt"], data_overrides=overrides)
    model.to(_device(cfg["device"])).eval()
    _, loader = split_loader(config, cfg["split"])
    settings = generation_settings(cfg["generation"], config)
    llm_config = model.llm.config
    num_layers, num_heads = llm_config.num_hidden_layers, llm_config.num_attention_heads
    candidates = default_candidates(num_layers, num_heads)
    if cfg.get("layers") is not None:
        bad = [layer for layer in cfg["layers"] if not 0 <= int(layer) < num_layers]
        if bad:
            raise ValueError(f"layers={bad}: the LLM has layers 0..{num_layers - 1} (0-indexed)")
        candidates = [(int(layer), head) for layer in cfg["layers"] for head in range(num_heads)]
    act = cfg["act"]

    def dev_wer(heads):
        handle = apply_act(model.llm, heads, beta=float(act["beta"]), threshold=float(act["threshold"]),
                           apply_during_decoding=bool(act["during_decoding"]))
        try:
            return corpus_wer(*transcribe(model, loader, settings, desc=f"ACT on {len(heads)} heads")).wer
        finally:
            handle.remove()

    meta = {"checkpoint": str(cfg["ckpt"]), "split": cfg["split"], **{k: act[k] for k in ("beta", "threshold", "during_decoding")}}
    return greedy_head_search(dev_wer, candidates, budget=cfg.get("budget"), max_heads=cfg.get("max_heads"),
                              min_improvement=float(cfg["min_improvement"]), output_path=Path(str(cfg["output"])), meta=meta)
