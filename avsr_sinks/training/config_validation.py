"""Checks of the run config that need no weights and no heavy imports.

``validate_config`` runs first, so that a missing path or a bad value is reported with the
key to set before anything loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..model.tasks import TASK_MODALITIES

TINY_DEMO_LLM = "tiny-demo"
# data.kind: generated corpora (synthetic, espeak), the LibriVox test utterances, auto_avsr's LRS2/LRS3.
CORPUS_KINDS = ("synthetic", "espeak", "librivox", "lrs")
AUDIO_ONLY_CORPORA = ("espeak", "librivox")
DTYPE_NAMES = ("auto", "bfloat16", "float16", "float32")  # auto: bfloat16 on a GPU, float32 on a CPU


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
    if model["llm"].get("dtype", "float32") not in DTYPE_NAMES:
        raise ConfigError(f"model.llm.dtype={model['llm']['dtype']!r}: choose one of {sorted(DTYPE_NAMES)}")
    if "audio" in TASK_MODALITIES[task]:
        enc = model["audio_encoder"]
        if _is_missing(enc.get("path")) and not enc.get("trainable"):
            raise ConfigError("model.audio_encoder.path is not set: pass a Hugging Face Whisper folder (e.g. whisper-medium)")
    if "video" in TASK_MODALITIES[task]:
        enc = model["video_encoder"]
        if _is_missing(enc.get("checkpoint")) and not enc.get("trainable"):
            raise ConfigError("model.video_encoder.checkpoint is not set: pass an AV-HuBERT checkpoint (e.g. large_vox_iter5.pt)")
    for enc_key in ("audio_encoder", "video_encoder"):
        dtype = model.get(enc_key, {}).get("dtype", "auto")
        if dtype not in DTYPE_NAMES:
            raise ConfigError(f"model.{enc_key}.dtype={dtype!r}: choose one of {sorted(DTYPE_NAMES)}")
        if model[enc_key].get("trainable") and dtype not in ("auto", "float32"):
            raise ConfigError(f"model.{enc_key}.dtype={dtype} with trainable=true: trained weights stay float32 "
                              "(set dtype=float32 or auto, or trainable=false)")
    for key in ("path", "checkpoint"):
        for enc_key in ("audio_encoder", "video_encoder"):
            value = model.get(enc_key, {}).get(key)
            if not _is_missing(value) and not Path(str(value)).expanduser().exists():
                raise ConfigError(f"model.{enc_key}.{key}={value} does not exist")
    llm_path = model["llm"]["path"]
    if llm_path != TINY_DEMO_LLM and str(llm_path).startswith(("/", ".", "~")) and not Path(str(llm_path)).expanduser().is_dir():
        raise ConfigError(f"model.llm.path={llm_path} is not a directory")
    data = cfg["data"]
    if data["kind"] not in CORPUS_KINDS:
        raise ConfigError(f"data.kind={data['kind']!r}: choose one of {', '.join(CORPUS_KINDS)} "
                          f"(data=lrs2|lrs3|synthetic|espeak|librivox)")
    if data["kind"] in AUDIO_ONLY_CORPORA and "video" in TASK_MODALITIES[task]:
        raise ConfigError(f"data={data['kind']} has audio only: task {task} needs video; use task=asr")
    if data["kind"] == "espeak":
        from ..data.espeak_corpus import EspeakCorpusConfig

        try:
            EspeakCorpusConfig(**dict(data.get("espeak") or {}))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.espeak: {err} (fields: see EspeakCorpusConfig)") from err
    if data["kind"] == "synthetic":
        from ..data.synthetic import SyntheticCorpusConfig

        try:
            SyntheticCorpusConfig(**{k: tuple(v) if k == "vocabulary" else v for k, v in dict(data["synthetic"]).items()})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.synthetic: {err} (fields: see SyntheticCorpusConfig)") from err
    if data["kind"] == "lrs":
        for key in ("root", "train_csv", "val_csv", "test_csv"):
            if _is_missing(data.get(key)):
                raise ConfigError(f"data.{key} is not set: pass data.{key}=/path (auto_avsr layout, see README)")
            if not Path(str(data[key])).expanduser().exists():
                raise ConfigError(f"data.{key}={data[key]} does not exist")
    try:
        from ..data.noise import TrainNoiseConfig

        TrainNoiseConfig.from_settings(data.get("train_noise"))
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise ConfigError(f"data.train_noise: {err} (fields: snr_db, kind, noise_file; or null)") from err
    baseline = cfg.get("baseline") or {"kind": "none"}
    if baseline["kind"] not in ("none", "sink_logit", "gated_attention"):
        raise ConfigError(f"baseline.kind={baseline['kind']!r}: choose none, sink_logit or gated_attention")
    encoder_lr = (cfg.get("optim") or {}).get("encoder_lr") or {}
    unknown = sorted(set(encoder_lr) - {"audio", "video"})
    if unknown:
        raise ConfigError(f"optim.encoder_lr has keys {unknown}: use audio and/or video, e.g. optim.encoder_lr={{video: 1e-3}}")
    decor = cfg["decor"]
    if decor["lambda"] is None or float(decor["lambda"]) < 0:
        raise ConfigError(f"decor.lambda={decor['lambda']}: must be a number >= 0")
    if decor["scope"] not in ("all", "prefix"):
        raise ConfigError(f"decor.scope={decor['scope']!r}: choose 'all' (paper) or 'prefix' (reference code)")


def compression_list(cfg: Mapping) -> list[int]:
    compression = cfg["compression"]
    return [int(compression)] if isinstance(compression, int) else [int(c) for c in compression]
