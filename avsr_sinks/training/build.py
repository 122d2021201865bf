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


def trains_on_gpu(trainer: Mapping) -> bool:
    """Whether the run's Trainer (``trainer`` config) puts the model on a CUDA GPU of this machine."""
    return torch.cuda.is_available() and trainer.get("accelerator", "auto") in ("gpu", "cuda", "auto")


def frozen_dtype(name: str | None, trainer: Mapping, trainable: bool = False) -> torch.dtype:
    """The dtype frozen weights are stored in: ``model.*.dtype``, where ``auto`` is bfloat16 on a
    GPU (half the memory of the frozen LLM and encoders) and float32 on a CPU (where this project's
    CPU results were measured). Weights that train always keep float32 master weights."""
    if trainable:
        return torch.float32
    if name in (None, "auto"):
        return torch.bfloat16 if trains_on_gpu(trainer) else torch.float32
    return DTYPES[name]


def build_audio_encoder(enc: Mapping, dtype: torch.dtype = torch.float32):
    if not _is_missing(enc.get("path")):
        return WhisperEncoder.from_pretrained(enc["path"], pad_to_30s=enc["pad_to_30s"], trainable=enc["trainable"], dtype=dtype,
                                              num_layers=enc.get("num_layers"))
    encoder = WhisperEncoder(WhisperConfig(**dict(enc["config"])), pad_to_30s=enc["pad_to_30s"], trainable=enc["trainable"],
                             num_layers=enc.get("num_layers"))
    encoder.encoder.to(dtype)
    return encoder


def build_video_encoder(enc: Mapping, dtype: torch.dtype = torch.float32):
    if not _is_missing(enc.get("checkpoint")):
        encoder = AVHubertEncoder.from_fairseq_checkpoint(enc["checkpoint"], modality="video", trainable=enc["trainable"])
    else:
        config = dict(enc["config"])
        if "resnet_widths" in config:
            config["resnet_widths"] = tuple(config["resnet_widths"])
        encoder = AVHubertEncoder(AVHubertConfig(**config), modality="video", trainable=enc["trainable"])
    encoder.to(dtype)
    lora = enc.get("lora")
    if lora:
        encoder.add_lora(rank=lora["rank"], alpha=lora["alpha"], dropout=lora["dropout"])
    return encoder


def keep_float32_master_weights(model: torch.nn.Module) -> None:
    """Every trainable parameter in float32, beside frozen weights of any dtype: AdamW's small
    updates would vanish in bf16 weights (an adapter injected into a bf16 layer starts in bf16)."""
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.is_floating_point():
            parameter.data = parameter.data.float()


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
    trainer = cfg.get("trainer") or {}
    encoders = {key: model_cfg[key] for key in ("audio_encoder", "video_encoder")}
    dtypes = {key: frozen_dtype(enc.get("dtype"), trainer, enc["trainable"]) for key, enc in encoders.items()}
    llm, tokenizer, special = load_llm(
        resolve_llm_path(llm_cfg, vocabulary, cfg["data"]["cache_dir"]),
        lora=LoraSettings(**dict(lora)) if lora else None,
        dtype=frozen_dtype(llm_cfg.get("dtype"), trainer),
        attn_implementation=llm_cfg.get("attn_implementation", "sdpa"),
        activation_checkpointing=bool(llm_cfg.get("activation_checkpointing", False)),
    )
    apply_training_baseline(llm, cfg.get("baseline") or {"kind": "none"})
    decor = cfg["decor"]
    projector = model_cfg["projector"]
    model = LlamaAVSR(
        llm,
        tokenizer,
        special,
        task=task,
        compression=compression_list(cfg),
        audio_encoder=build_audio_encoder(encoders["audio_encoder"], dtypes["audio_encoder"]) if "audio" in modalities else None,
        video_encoder=build_video_encoder(encoders["video_encoder"], dtypes["video_encoder"]) if "video" in modalities else None,
        compressor=model_cfg["compressor"],
        projector=projector["kind"],
        projector_hidden=projector.get("hidden_dim"),
        projector_layer_norm=projector.get("layer_norm", False),
        projector_matches_embedding_norm=projector.get("match_embedding_norm", False),
        projector_ctc_weight=float(projector.get("ctc_weight", 0.0)),
        projector_centers_tokens=bool(projector.get("center_tokens", False)),
        projector_ctc_warmup_steps=int(projector.get("ctc_warmup_steps", 0)),
        prompt=cfg["task"].get("prompt"),
        decorrelation=DecorrelationSettings(
            weight=float(decor["lambda"]),
            layers=list(decor["layers"]) if decor.get("layers") is not None else None,
            scope=decor["scope"],
            eps=float(decor["eps"]),
        ),
    )
    keep_float32_master_weights(model)
    return model
