"""Build LlamaAVSR from the run config (a nested dict / DictConfig, schema in configs/).

Everything here reads config keys and calls the library's constructors; it knows no Hydra.
``validate_config`` runs first so that a missing path or a bad value is reported, with the
key to set, before any weights load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import WhisperConfig

from ..encoders import AVHubertEncoder, WhisperEncoder
from ..encoders.avhubert import AVHubertConfig
from ..model.avsr import TASK_MODALITIES, DecorrelationSettings, LlamaAVSR
from ..model.llm import LoraSettings, load_llm
from ..model.tiny_llm import build_tiny_llm

TINY_DEMO_LLM = "tiny-demo"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what to set."""


def _is_missing(value) -> bool:
    return value is None or value == "???"


def validate_config(cfg: Mapping) -> None:
    """Check the keys the model and data need, before anything heavy happens."""
    task = cfg["task"]["name"]
    if task not in TASK_MODALITIES:
        raise ConfigError(f"task.name={task!r}: choose one of {sorted(TASK_MODALITIES)} (e.g. task=avsr)")
    compression = cfg["compression"]
    if isinstance(compression, (int, str)) or compression is None:
        compression = [compression]
    compression = list(compression)
    wanted = len(TASK_MODALITIES[task])
    if len(compression) != wanted or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in compression):
        example = "compression=16,5 (audio,video)" if task == "avsr" else "compression=4"
        raise ConfigError(f"compression={compression} does not fit task {task}: it takes {wanted} positive integer(s), e.g. {example}")
    model = cfg["model"]
    if _is_missing(model["llm"]["path"]):
        raise ConfigError("model.llm.path is not set: pass model.llm.path=/path/to/a/Hugging-Face/Llama folder")
    if model["llm"].get("dtype", "float32") not in DTYPES:
        raise ConfigError(f"model.llm.dtype={model['llm']['dtype']!r}: choose one of {sorted(DTYPES)}")
    if "audio" in TASK_MODALITIES[task]:
        enc = model["audio_encoder"]
        if _is_missing(enc.get("path")) and not enc.get("trainable"):
            raise ConfigError("model.audio_encoder.path is not set: pass a Hugging Face Whisper folder (e.g. whisper-medium)")
    if "video" in TASK_MODALITIES[task]:
        enc = model["video_encoder"]
        if _is_missing(enc.get("checkpoint")) and not enc.get("trainable"):
            raise ConfigError("model.video_encoder.checkpoint is not set: pass an AV-HuBERT checkpoint (e.g. large_vox_iter5.pt)")
    for key in ("path", "checkpoint"):
        for enc_key in ("audio_encoder", "video_encoder"):
            value = model.get(enc_key, {}).get(key)
            if not _is_missing(value) and not Path(str(value)).expanduser().exists():
                raise ConfigError(f"model.{enc_key}.{key}={value} does not exist")
    llm_path = model["llm"]["path"]
    if llm_path != TINY_DEMO_LLM and str(llm_path).startswith(("/", ".", "~")) and not Path(str(llm_path)).expanduser().is_dir():
        raise ConfigError(f"model.llm.path={llm_path} is not a directory")
    decor = cfg["decor"]
    if decor["lambda"] is None or float(decor["lambda"]) < 0:
        raise ConfigError(f"decor.lambda={decor['lambda']}: must be a number >= 0")
    if decor["scope"] not in ("all", "prefix"):
        raise ConfigError(f"decor.scope={decor['scope']!r}: choose 'all' (paper) or 'prefix' (reference code)")


def compression_list(cfg: Mapping) -> list[int]:
    compression = cfg["compression"]
    return [int(compression)] if isinstance(compression, int) else [int(c) for c in compression]


def build_audio_encoder(enc: Mapping):
    if enc["kind"] != "whisper":
        raise ConfigError(f"model.audio_encoder.kind={enc['kind']!r}: only 'whisper' is available")
    if not _is_missing(enc.get("path")):
        return WhisperEncoder.from_pretrained(enc["path"], pad_to_30s=enc["pad_to_30s"], trainable=enc["trainable"])
    return WhisperEncoder(WhisperConfig(**dict(enc["config"])), pad_to_30s=enc["pad_to_30s"], trainable=enc["trainable"])


def build_video_encoder(enc: Mapping):
    if enc["kind"] != "avhubert":
        raise ConfigError(f"model.video_encoder.kind={enc['kind']!r}: only 'avhubert' is available")
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
        raise ConfigError("model.llm.path=tiny-demo needs the corpus vocabulary (data.kind=synthetic)")
    tiny = dict(llm["tiny"])
    return build_tiny_llm(Path(cache_dir) / "tiny_llm", vocabulary, **tiny)


def build_model(cfg: Mapping, vocabulary: list[str] | None = None) -> LlamaAVSR:
    """LlamaAVSR from a validated config. ``vocabulary``: the demo corpus's words."""
    validate_config(cfg)
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
