"""Sink analysis of a trained checkpoint: the full sink report on a few utterances of a split."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from statistics import mean

import torch

from ..data import AVSRDataset, collate_samples
from ..model.tasks import TASK_MODALITIES
from ..sinks.report import sink_report
from .checkpoints import checkpoint_step, load_trained_model
from .datamodule import resolve_corpus, split_csv
from .evaluate import _device

AVERAGED = ("bos_alpha", "intermediate_alpha", "max_activation_ratio", "mean_bos_cosine")


def analyze_checkpoint(cfg: Mapping) -> dict:
    """Write ``<output_dir>/<utterance id>/`` reports for ``cfg['num_samples']`` utterances of
    ``cfg['split']`` (teacher-forced on the reference transcript, as in training) and
    ``summary.json`` with the per-utterance summaries and their means."""
    if cfg["split"] not in ("train", "val", "test"):
        raise ValueError(f"split={cfg['split']!r}: choose train, val or test")
    if int(cfg["num_samples"]) < 1:
        raise ValueError(f"num_samples={cfg['num_samples']}: need at least 1")
    overrides = {k: v for k, v in cfg["data"].items() if v is not None}
    model, config = load_trained_model(cfg["ckpt"], data_overrides=overrides)
    model.to(_device(cfg["device"]))
    result = {"checkpoint": str(cfg["ckpt"]), "checkpoint_step": checkpoint_step(cfg["ckpt"]),
              "task": config["task"]["name"], "decor_lambda": config["decor"]["lambda"],
              **analyze_model(model, config, cfg["split"], int(cfg["num_samples"]), Path(str(cfg["output_dir"])))}
    (Path(str(cfg["output_dir"])) / "summary.json").write_text(json.dumps(result, indent=2))
    return result


def analyze_model(model, config: Mapping, split: str, num_samples: int, out_dir: Path) -> dict:
    """Sink reports of the first ``num_samples`` utterances of ``split`` into ``out_dir``, and
    their means (``mean``), intermediate sink labels and per-utterance summaries."""
    model.eval()
    corpus = resolve_corpus(config["data"])
    dataset = AVSRDataset(corpus["root"], split_csv(corpus, config["data"], split), modalities=TASK_MODALITIES[config["task"]["name"]],
                          split=split, strict=config["data"].get("strict", False), augment=False)
    device = next(model.parameters()).device
    per_sample = {}
    for index in range(min(num_samples, len(dataset))):
        sample = dataset[index]
        if sample is None:  # a corrupt file, already reported by the dataset
            continue
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate_samples([sample]).items()}
        with torch.no_grad():
            inputs = model.assemble(batch)
        per_sample[sample["id"]] = sink_report(
            model.llm, inputs.token_labels, out_dir / sample["id"].replace("/", "_"), sample=0,
            attention_mask=inputs.attention_mask, inputs_embeds=inputs.inputs_embeds, position_ids=inputs.position_ids,
        )
    if not per_sample:
        raise ValueError(f"no readable utterance among the first {num_samples} of {corpus[split + '_csv']}")
    summaries = list(per_sample.values())
    return {
        "utterances": len(summaries),
        "mean": {key: mean(s[key] for s in summaries) for key in AVERAGED},
        "intermediate_sink_labels": dict(Counter(s["intermediate_label"] for s in summaries if s["intermediate_label"])),
        "per_utterance": {k: {key: s[key] for key in (*AVERAGED, "intermediate_label", "intermediate_layer")}
                          for k, s in per_sample.items()},
    }
