"""Build LlamaAVSR from the run config (a nested dict, schema in configs/ and config_validation).

Everything here reads config keys and calls the library's constructors; it knows no Hydra. The
kinds and values it reads are checked by ``validate_model_config`` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import WhisperConfig

from ..encoders import AVHubertEncoder, WhisperEncoder
from ..encoders.avhubert import AVHubertConfig
from ..model.avsr import DecorrelationSettings, LlamaAVSR
from ..model.tasks import TASK_MODALITIES
from ..model.llm import LoraSettings, load_llm
from ..model.tiny_llm import build_tiny_llm

from .config_validation import TINY_DEMO_LLM, ConfigError, _is_missing, compression_list, validate_model_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_audio_encoder(enc: Mapping):
    if not _is_missing(enc.get("path")):
        return WhisperEncoder.from_pretrained(enc["path"], pad_to_30s=enc["pad_to_30s"], trainable=enc["trainable"])
    return WhisperEncoder(WhisperConfig(**dict(enc["config"])), pad_to_30s=enc["pad_to_30s"], trainable=enc["trainable"])


def build_video_encoder(enc: Mapping):
    if not _is_missing(enc.get("checkpoint")):
        encoder = AVHubertEncoder.from_fairseq_checkpoint(enc["checkpoint"], modality="video", trainable=enc["trainable"])
    else:
        config = dict(enc["config"])
        if "resnet_widths" in config:
            config["resnet_widths"] = tuple(config["resnet_widths"])
        encoder = AVHubertEncoder(AVHubertConfig(**config), modality="video", trainable=enc["trainable"])
    lora = enc.get("lora")
    if lora:
        encoder.add_lora(rank=lora["rank"], alpha=lora["alpha"], dropout=lora["dropout"])
    return encoder


def resolve_llm_path(llm: Mapping, vocabulary: list[str] | None, cache_dir: str | Path) -> Path:
    """The LLM folder; the demo's tiny random Llama is written once into the cache."""
    if llm["path"] != TINY_DEMO_LLM:
        return Path(str(llm["path"])).expanduser() if str(llm["path"]).startswith(("/", ".", "~")) else llm["path"]
    if not vocabulary:
        raise ConfigError("model.llm.path", TINY_DEMO_LLM, "the tiny demo LLM is built over the corpus words, and this corpus has none",
                          "use it with data=synthetic, or pass a Hugging Face LLM folder")
    tiny = dict(llm["tiny"])
    return build_tiny_llm(Path(cache_dir) / "tiny_llm", vocabulary, **tiny)


def apply_training_baseline(llm, baseline: Mapping) -> None:
    """Add the fine-tuning-time sink mitigation ``baseline.kind`` to the LoRA-wrapped LLM. After
    peft, so its new parameters stay trainable (and are saved with the trainable set)."""
    from ..sinks.baselines import apply_gated_attention, apply_sink_logits

    kind = baseline["kind"]
    if kind == "sink_logit":
        apply_sink_logits(llm, init=float(baseline["sink_logit_init"]))
    elif kind == "gated_attention":
        apply_gated_attention(llm)


def build_model(cfg: Mapping, vocabulary: list[str] | None = None) -> LlamaAVSR:
    """LlamaAVSR from a run config. ``vocabulary``: the demo corpus's words."""
    validate_model_config(cfg)
    model_cfg, task = cfg["model"], cfg["task"]["name"]
    modalities = TASK_MODALITIES[task]
    llm_cfg = model_cfg["llm"]
    lora = llm_cfg.get("lora")
    llm, tokenizer, special = load_llm(
        resolve_llm_path(llm_cfg, vocabulary, cfg["data"]["cache_dir"]),
        lora=LoraSettings(**dict(lora)) if lora else None,
        dtype=DTYPES[llm_cfg.get("dtype", "float32")],
        attn_implementation=llm_cfg.get("attn_implementation", "sdpa"),
    )
    apply_training_baseline(llm, cfg.get("baseline") or {"kind": "none"})
    decor = cfg["decor"]
    projector = model_cfg["projector"]
    return LlamaAVSR(
        llm,
        tokenizer,
        special,
        task=task,
        compression=compression_list(cfg),
        audio_encoder=build_audio_encoder(model_cfg["audio_encoder"]) if "audio" in modalities else None,
        video_encoder=build_video_encoder(model_cfg["video_encoder"]) if "video" in modalities else None,
        compressor=model_cfg["compressor"],
        projector=projector["kind"],
        projector_hidden=projector.get("hidden_dim"),
        projector_layer_norm=projector.get("layer_norm", False),
        prompt=cfg["task"].get("prompt"),
        decorrelation=DecorrelationSettings(
            weight=float(decor["lambda"]),
            layers=list(decor["layers"]) if decor.get("layers") is not None else None,
            scope=decor["scope"],
            eps=float(decor["eps"]),
        ),
    )
