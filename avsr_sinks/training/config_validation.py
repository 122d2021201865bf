"""One pass over a resolved run config, before any corpus, tokenizer or weight is touched.

The schema is the YAML defaults plus ``RULES``: every key in ``configs/`` is valid, with the type
of its default (an integer default takes integers, ``true``/``false`` takes booleans, ...), unless
``RULES`` says more (ranges, choices, paths that must exist, null allowed). A new YAML key is
checked by its type at once; give it a rule when its default's type does not say enough. Checks
that relate several keys (the compression for the task, the paths a task needs, decor layers
against the LLM's layer count) follow the table. The first problem found is raised as a
``ConfigError`` whose message is ``<key>=<value>: <what is wrong>; <what to do>``.

No heavy imports (torch, transformers, Lightning): an error must come back in a second or two.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import fields
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

from ..data.noise import NOISE_KINDS, TrainNoiseConfig
from ..model.tasks import COMPRESSOR_KINDS, PROJECTOR_KINDS, TASK_MODALITIES
from .config_rules import (AnyOf, Boolean, Check, ExistingPath, Integer, ListOf, MappingOf, Number, OneOf, Pattern, Text,
                           format_value, nullable)

TINY_DEMO_LLM = "tiny-demo"
# data.kind: generated corpora (synthetic, espeak), the LibriVox test utterances, auto_avsr's LRS2/LRS3.
CORPUS_KINDS = ("synthetic", "espeak", "librivox", "lrs")
AUDIO_ONLY_CORPORA = ("espeak", "librivox")
# Corpora without every split: LibriVox's five utterances are a test set.
CORPUS_SPLITS = {"librivox": ("test",)}
DTYPE_NAMES = ("auto", "bfloat16", "float16", "float32")  # auto: bfloat16 on a GPU, float32 on a CPU
SHARDED_STRATEGY = "fsdp2"  # trainer.strategy of FSDP2 (training/sharding.py)
BASELINE_KINDS = ("none", "sink_logit", "gated_attention")
SPLITS = ("train", "val", "test")
MISSING = "???"


class ConfigError(ValueError):
    """A config value that cannot work: the key, its value, what is wrong and what to do."""

    def __init__(self, key: str, value, problem: str, fix: str) -> None:
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={format_value(value)}: {problem}; {fix}")


def _is_missing(value) -> bool:
    return value is None or value == MISSING


# Precision names Lightning 2 accepts (lightning.fabric.connector._PRECISION_INPUT).
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "32-true", "64-true", 64, 32, 16, "64", "32", "16", "bf16")
POSITIVE = Number(low=0, low_open=True)
FRACTION = Number(low=0, high=1)
BATCH_LIMIT = nullable(AnyOf(Integer(low=0), FRACTION))  # Lightning: a count of batches or a fraction of them
DEVICE = Pattern(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:<index> or mps")
LORA = {
    "rank": Integer(low=1),
    "alpha": POSITIVE,
    "dropout": Number(low=0, high=1, high_open=True),
    "target_modules": ListOf(Text(), min_length=1),
}

# Data keys of a corpus config (configs/data/*.yaml).
DATA_RULES = {
    "data.kind": OneOf(*CORPUS_KINDS),
    "data.cache_dir": Text(),
    "data.synthetic": MappingOf(),
    "data.espeak": nullable(MappingOf()),
    "data.max_frames": Integer(low=1),
    "data.eval_max_frames": Integer(low=1),
    "data.num_workers": Integer(low=0),
    "data.strict": Boolean(),
    "data.max_bad_fraction": FRACTION,
    "data.max_frames_per_sample": nullable(Integer(low=1)),
    "data.max_transcript_chars": nullable(Integer(low=1)),
    "data.augment": Boolean(),
    "data.train_noise": nullable(MappingOf()),
    "data.feature_cache": nullable(Text()),
    "data.root": ExistingPath("dir"),
    "data.source": Text(),
    **{f"data.{split}_csv": nullable(ExistingPath("file")) for split in SPLITS},
}
GENERATION_RULES = {"generation.num_beams": Integer(low=1), "generation.max_new_tokens": nullable(Integer(low=1))}
ACT_RULES = {
    "act.heads_file": nullable(ExistingPath("file")),
    "act.beta": FRACTION,
    "act.threshold": FRACTION,
    "act.during_decoding": Boolean(),
}

TRAIN_RULES = {
    "seed": Integer(low=0),
    "task.name": OneOf(*TASK_MODALITIES),
    "task.prompt": nullable(Text()),
    "compression": AnyOf(Integer(low=1), ListOf(Integer(low=1), min_length=1)),
    "decor.lambda": Number(low=0),
    "decor.layers": nullable(ListOf(Integer(low=1), min_length=1)),
    "decor.scope": OneOf("all", "prefix"),
    "decor.eps": POSITIVE,
    "baseline.kind": OneOf(*BASELINE_KINDS),
    "baseline.sink_logit_init": Number(),
    "optim.lr": POSITIVE,
    "optim.weight_decay": Number(low=0),
    "optim.betas": ListOf(Number(low=0, high=1, high_open=True), length=2),
    "optim.warmup_steps": Integer(low=0),
    "optim.min_lr_ratio": FRACTION,
    "optim.encoder_lr": nullable(MappingOf(keys=("audio", "video"), value=POSITIVE)),
    "optim.sink_logit_lr": nullable(POSITIVE),
    "checkpoint.save_last_k": Integer(low=-1),
    "checkpoint.every_n_steps": Integer(low=0),
    "checkpoint.keep_last_k_steps": Integer(low=-1),
    "checkpoint.average_last_k": Integer(low=1),
    "ckpt_path": nullable(AnyOf(OneOf("last"), ExistingPath("path"), described="last, a run folder or a checkpoint file")),
    "sink_monitor.every_n_steps": Integer(low=0),
    "model.llm.path": Text(),
    "model.*.dtype": OneOf(*DTYPE_NAMES),
    "model.llm.attn_implementation": OneOf("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"),
    "model.llm.lora": nullable(MappingOf(keys=tuple(LORA))),
    **{f"model.*.lora.{key}": check for key, check in LORA.items()},
    "model.llm.tiny.*": Integer(low=1),
    "model.llm.tiny.seed": Integer(low=0),
    "model.audio_encoder.kind": OneOf("whisper"),
    "model.audio_encoder.path": nullable(ExistingPath("dir")),
    "model.audio_encoder.config": nullable(MappingOf()),
    "model.audio_encoder.num_layers": nullable(Integer(low=1)),
    "model.video_encoder.kind": OneOf("avhubert"),
    "model.video_encoder.checkpoint": nullable(ExistingPath("file")),
    "model.video_encoder.config": nullable(MappingOf()),
    "model.video_encoder.lora": nullable(MappingOf(keys=("rank", "alpha", "dropout"))),
    "model.compressor": OneOf(*COMPRESSOR_KINDS),
    "model.projector.kind": OneOf(*PROJECTOR_KINDS),
    "model.projector.hidden_dim": nullable(Integer(low=1)),
    "model.projector.ctc_weight": Number(low=0),
    "model.projector.ctc_warmup_steps": Integer(low=0),
    "trainer.max_epochs": Integer(low=-1),
    "trainer.max_steps": Integer(low=-1),
    "trainer.accelerator": OneOf("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"),
    "trainer.devices": AnyOf(Integer(low=1), OneOf(-1, "auto"), ListOf(Integer(low=0), min_length=1)),
    "trainer.strategy": Text(),
    "trainer.num_nodes": Integer(low=1),
    "trainer.precision": nullable(OneOf(*PRECISIONS)),
    "trainer.gradient_clip_val": nullable(Number(low=0)),
    "trainer.accumulate_grad_batches": Integer(low=1),
    "trainer.log_every_n_steps": Integer(low=1),
    "trainer.check_val_every_n_epoch": nullable(Integer(low=1)),
    "trainer.num_sanity_val_steps": Integer(low=-1),
    "trainer.limit_*_batches": BATCH_LIMIT,
    "trainer.deterministic": AnyOf(Boolean(), OneOf("warn")),
    "logger.wandb.mode": OneOf("offline", "online", "disabled"),
    "logger.wandb.name": nullable(Text()),
    **GENERATION_RULES,
    **DATA_RULES,
}

# The scripts that read a trained checkpoint: their `data` keys replace the checkpoint's, null keeps it.
CHECKPOINT_RULES = {
    "ckpt": ExistingPath("file"),
    "device": DEVICE,
    **{key: nullable(check) for key, check in DATA_RULES.items()},
}
RULES = {
    "train": TRAIN_RULES,
    "eval": {
        **CHECKPOINT_RULES, **ACT_RULES, **GENERATION_RULES,
        "split": OneOf("test", "val"),
        "eval.snr": AnyOf(ListOf(AnyOf(Number(), OneOf("clean")), min_length=1), Number(), OneOf("clean"),
                          described="SNR levels in dB and/or clean"),
        "eval.noise_file": nullable(ExistingPath("file")),
        "eval.noise_kind": OneOf(*NOISE_KINDS),
    },
    "analyze": {**CHECKPOINT_RULES, "split": OneOf(*SPLITS), "num_samples": Integer(low=1)},
    "search_act_heads": {
        **CHECKPOINT_RULES, **ACT_RULES, **GENERATION_RULES,
        "split": OneOf(*SPLITS),
        "layers": nullable(ListOf(Integer(low=0), min_length=1)),
        "budget": nullable(Integer(low=1)),
        "max_heads": nullable(Integer(low=1)),
        "min_improvement": Number(low=0),
        "output": Text(),
    },
    "compare": {
        **CHECKPOINT_RULES, **ACT_RULES, **GENERATION_RULES,
        "runs.base": ExistingPath("file"),
        "runs.*": nullable(ExistingPath("file")),
        "split": OneOf("test", "val"),
        "num_samples": Integer(low=1),
        "bootstrap.resamples": Integer(low=1),
        "bootstrap.confidence": Number(low=0, high=1, low_open=True, high_open=True),
        "train_steps": Integer(low=1),
        "timing_passes": Integer(low=1),
    },
    "validate_data": {
        **DATA_RULES,
        "splits": ListOf(OneOf(*SPLITS), min_length=1),
        "modalities": ListOf(OneOf("audio", "video"), min_length=1),
        "compression": nullable(ListOf(Integer(low=1), min_length=1)),
        "llm": nullable(ExistingPath("dir")),
        "max_frames": nullable(Integer(low=1)),
        "max_av_mismatch_frames": Integer(low=0),
        "workers": nullable(Integer(low=0)),
    },
}
# What to do, where "e.g. <key>=<default>" does not say it.
HINTS = {
    "ckpt": "pass ckpt=outputs/train/<run>/checkpoints/last.ckpt",
    "runs.base": "pass runs.base=<the unmitigated run's checkpoint>",
    "model.llm.path": "pass model.llm.path=/path/to/a/Hugging-Face/Llama folder",
    "model.audio_encoder.path": "pass a Hugging Face Whisper folder, e.g. model.audio_encoder.path=/models/whisper-medium",
    "model.video_encoder.checkpoint": "pass an AV-HuBERT checkpoint, e.g. model.video_encoder.checkpoint=/models/large_vox_iter5.pt",
    "data.root": "pass the corpus folder (auto_avsr layout, see README), e.g. data.root=/data/lrs3",
    "decor.layers": "list 1-indexed decoder layers, e.g. decor.layers=[2,3], or null for the paper's 2..L-1",
    "eval.snr": "list SNRs in dB and/or clean, e.g. eval.snr=[-5,0,5,clean]",
}
# Mappings that take keys their YAML default does not list, checked by their rule or dataclass (the
# encoders' `config` goes as it is to WhisperConfig / AVHubertConfig, which check it when built).
OPEN_MAPPINGS = ("optim.encoder_lr", "data.synthetic", "data.espeak", "data.train_noise", "model.audio_encoder.config",
                 "model.video_encoder.config", "model.llm.lora", "model.video_encoder.lora", "trainer", "runs")


def key_paths(tree, prefix: str = "") -> dict[str, object]:
    """Every dotted key of a nested mapping, inner nodes too, with its value."""
    paths = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            paths[path] = value
            paths.update(key_paths(value, path + "."))
    return paths


def nearest_key(key: str, known: list[str]) -> str | None:
    """The known dotted key closest to ``key``: by the whole path, else by its last part."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return close[0]
    last = key.rsplit(".", 1)[-1]
    same_last = [k for k in known if difflib.SequenceMatcher(None, last, k.rsplit(".", 1)[-1]).ratio() >= 0.8]
    return max(same_last, key=lambda k: difflib.SequenceMatcher(None, key, k).ratio()) if same_last else None


def unknown_key_error(key: str, value, known: Mapping[str, object]) -> ConfigError:
    """The error for a key the config does not have, with the nearest valid name."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):  # a key below a null or scalar entry
        parent = ".".join(parts[:end])
        if parent in known and not isinstance(known[parent], Mapping):
            return ConfigError(key, value, f"{parent} is {format_value(known[parent])} here, not a mapping with keys",
                               f"set it whole, e.g. {parent}={{{parts[end]}: {format_value(value)}}}")
    in_hydra = key.startswith("hydra.")
    suggestion = nearest_key(key, [k for k in known if k.startswith("hydra.") == in_hydra])
    if suggestion:
        return ConfigError(key, value, "no such key", f"did you mean {suggestion}?")
    parent = key.rpartition(".")[0]
    siblings = sorted(k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent)
    return ConfigError(key, value, "no such key", f"the keys{' of ' + parent if parent else ''} are {', '.join(siblings)}")


def _rule_for(rules: Mapping[str, Check], key: str) -> Check | None:
    if key in rules:
        return rules[key]
    matches = [pattern for pattern in rules if "*" in pattern and fnmatchcase(key, pattern)]
    return rules[max(matches, key=len)] if matches else None


def _inferred_check(default) -> Check | None:
    """The check a YAML default implies: its type."""
    if isinstance(default, bool):
        return Boolean()
    if isinstance(default, int):
        return Integer()
    if isinstance(default, float):
        return Number()
    if isinstance(default, str) and default != MISSING:
        return Text()
    if isinstance(default, list):
        return ListOf()
    return None


def _under_open_mapping(key: str) -> bool:
    return any(key.startswith(prefix + ".") for prefix in OPEN_MAPPINGS)


def _fix(key: str, check: Check, default) -> str:
    if key in HINTS:
        return HINTS[key]
    if check.hint:
        return check.hint
    if default != MISSING and check.accepts(default):
        return f"e.g. {key}={format_value(default)} (the default)"
    return f"see {key} in configs/ and the README"


def check_against_schema(cfg: Mapping, rules: Mapping[str, Check], defaults: Mapping | None) -> None:
    """Every key known (to the defaults, or under an open mapping) and every value accepted by its
    rule, or by its default's type when no rule names it. Unset (``???``) values are left to the
    checks that know when they are needed."""
    known = key_paths(defaults) if defaults is not None else None
    for key, value in key_paths(cfg).items():
        if key.startswith("hydra.") or key == "hydra":
            continue
        if known is not None and key not in known and not _under_open_mapping(key):
            raise unknown_key_error(key, value, known)
        if value == MISSING:
            continue
        default = known.get(key, MISSING) if known is not None else MISSING
        check = _rule_for(rules, key) or _inferred_check(default)
        problem = check.problem(value) if check is not None else None
        if problem:
            raise ConfigError(key, value, problem, _fix(key, check, default))


# The key each checkpoint script cannot run without.
REQUIRED = {"eval": "ckpt", "analyze": "ckpt", "search_act_heads": "ckpt", "compare": "runs.base"}
# What build_model reads of a run config.
MODEL_SECTIONS = ("task", "compression", "model", "decor", "baseline")


def validate_config(cfg: Mapping, script: str = "train", defaults: Mapping | None = None) -> None:
    """Check the config of ``script`` (``train``, ``eval``, ...; configs/<script>.yaml), before anything
    heavy happens. ``defaults``: the same config without the command line's values (its groups
    chosen), which makes unknown keys and type changes errors; without it only ``RULES`` apply."""
    check_against_schema(cfg, RULES[script], defaults)
    if script == "train":
        _check_model(cfg)
        _check_training(cfg)
        if defaults is not None:
            _check_trainer_arguments(cfg["trainer"], defaults["trainer"])
        return
    if script in REQUIRED and _is_missing(key_paths(cfg)[REQUIRED[script]]):
        raise ConfigError(REQUIRED[script], MISSING, "is not set", HINTS[REQUIRED[script]])
    data = cfg.get("data") or {}
    if script == "validate_data":
        if data["kind"] in AUDIO_ONLY_CORPORA and "video" in cfg["modalities"]:
            raise ConfigError("modalities", cfg["modalities"], f"data={data['kind']} has audio only", "use modalities=[audio]")
        if cfg["compression"] is not None and len(cfg["compression"]) != len(cfg["modalities"]):
            raise ConfigError("compression", cfg["compression"], f"gives {len(cfg['compression'])} rate(s) for "
                              f"modalities={format_value(cfg['modalities'])}", "give one rate per modality, in their order")
        if cfg["llm"] is not None and cfg["compression"] is None:
            raise ConfigError("llm", cfg["llm"], "the sequence length depends on the compression, and it is not set",
                              "pass compression=[...] too (the run's rates)")
        if cfg["llm"] is not None and not (Path(cfg["llm"]).expanduser() / "config.json").is_file():
            raise ConfigError("llm", cfg["llm"], "has no config.json: not a Hugging Face model folder",
                              "pass the run's model.llm.path")
        _check_corpus(data, cfg["splits"], "splits")
    elif data.get("kind") is not None:  # data=<corpus> on the command line: another corpus than the checkpoint's
        _check_corpus(data, [cfg["split"]] + (["train"] if script == "compare" else []), "split")


def validate_model_config(cfg: Mapping) -> None:
    """The checks of what build_model reads (``MODEL_SECTIONS``) of a run config: a checkpoint's
    config is rebuilt on another machine, where its corpus paths need not exist."""
    check_against_schema({key: cfg[key] for key in MODEL_SECTIONS if key in cfg}, TRAIN_RULES, None)
    _check_model(cfg)


def _check_model(cfg: Mapping) -> None:
    task = cfg["task"]["name"]
    modalities = TASK_MODALITIES[task]
    compression = cfg["compression"]
    rates = [compression] if isinstance(compression, int) else list(compression)
    if len(rates) != len(modalities):
        raise ConfigError("compression", compression, f"task {task} takes {len(modalities)} rate(s) ({', '.join(modalities)})",
                          "pass audio then video, e.g. compression=16,5" if task == "avsr" else "pass one rate, e.g. compression=4")
    model = cfg["model"]
    if _is_missing(model["llm"]["path"]):
        raise ConfigError("model.llm.path", model["llm"]["path"], "is not set", HINTS["model.llm.path"])
    llm_path = str(model["llm"]["path"])
    if llm_path != TINY_DEMO_LLM and llm_path.startswith(("/", ".", "~")) and not Path(llm_path).expanduser().is_dir():
        raise ConfigError("model.llm.path", llm_path, "is not a folder", HINTS["model.llm.path"])
    for modality, encoder, key in (("audio", "audio_encoder", "path"), ("video", "video_encoder", "checkpoint")):
        settings = model[encoder]
        if modality in modalities and _is_missing(settings.get(key)) and not settings.get("trainable"):
            raise ConfigError(f"model.{encoder}.{key}", settings.get(key),
                              "is not set, and a frozen encoder needs pretrained weights", HINTS[f"model.{encoder}.{key}"])
    for encoder in ("audio_encoder", "video_encoder"):
        settings = model[encoder]
        if settings.get("trainable") and settings.get("dtype", "auto") not in ("auto", "float32"):
            raise ConfigError(f"model.{encoder}.dtype", settings["dtype"], "a trainable encoder keeps float32 weights",
                              f"set model.{encoder}.dtype=float32 (or auto), or model.{encoder}.trainable=false")
    _check_tiny_llm(model["llm"])
    _check_decor_layers(cfg["decor"], llm_layer_count(model["llm"]))
    if "audio" in modalities:
        _check_whisper_layers(model["audio_encoder"])


def _check_training(cfg: Mapping) -> None:
    checkpoint = cfg["checkpoint"]
    if checkpoint["average_last_k"] > 1 and 0 <= checkpoint["save_last_k"] < checkpoint["average_last_k"]:
        raise ConfigError("checkpoint.average_last_k", checkpoint["average_last_k"],
                          f"averages more checkpoints than checkpoint.save_last_k={checkpoint['save_last_k']} keeps",
                          f"raise checkpoint.save_last_k to {checkpoint['average_last_k']} or more")
    warmup, max_steps = cfg["model"]["projector"].get("ctc_warmup_steps", 0), cfg["trainer"].get("max_steps", -1)
    if warmup and max_steps is not None and 0 <= max_steps <= warmup:
        raise ConfigError("model.projector.ctc_warmup_steps", warmup,
                          f"leaves no step for the LLM (trainer.max_steps={max_steps})",
                          f"set trainer.max_steps above {warmup}, or fewer warm-up steps")
    data = cfg["data"]
    if data.get("max_frames_per_sample") is not None and data["max_frames_per_sample"] > data["max_frames"]:
        raise ConfigError("data.max_frames_per_sample", data["max_frames_per_sample"],
                          f"admits samples longer than a batch may hold (data.max_frames={data['max_frames']})",
                          f"set data.max_frames_per_sample<={data['max_frames']} or raise data.max_frames")
    task = cfg["task"]["name"]
    if data["kind"] in AUDIO_ONLY_CORPORA and "video" in TASK_MODALITIES[task]:
        raise ConfigError("data", data["kind"], f"has audio only, and task {task} needs video",
                          "use task=asr, or a corpus with video (data=synthetic, lrs2 or lrs3)")
    _check_corpus(data, ["train", "val"] + (["test"] if cfg.get("run_test", True) else []))
    check_sharding(cfg)


def check_sharding(cfg: Mapping) -> None:
    """What trainer.strategy=fsdp2 (FSDP2, training/sharding.py) needs of the rest of the run."""
    trainer = cfg["trainer"]
    if trainer.get("strategy", "auto") != SHARDED_STRATEGY:
        return
    devices = trainer.get("devices", 1)
    if not isinstance(devices, int) or isinstance(devices, bool):
        raise ConfigError("trainer.devices", devices, f"trainer.strategy={SHARDED_STRATEGY} needs a number of devices",
                          "e.g. trainer.devices=8")
    if cfg.get("run_test", True):
        raise ConfigError("run_test", True, f"the end-of-training test decode runs on rank 0 alone, which a model "
                          f"sharded by trainer.strategy={SHARDED_STRATEGY} cannot",
                          "set run_test=false and decode the checkpoint with scripts/eval.py")
    every = int((cfg.get("sink_monitor") or {}).get("every_n_steps") or 0)
    if every > 0:
        raise ConfigError("sink_monitor.every_n_steps", every, f"the monitor runs the LLM outside the sharded forward of "
                          f"trainer.strategy={SHARDED_STRATEGY}", "set it to 0 and run scripts/analyze.py on the checkpoints")


def _check_tiny_llm(llm: Mapping) -> None:
    if llm["path"] != TINY_DEMO_LLM:
        return
    tiny = llm["tiny"]
    for numerator, denominator in (("hidden_size", "num_heads"), ("num_heads", "num_kv_heads")):
        if tiny[numerator] % tiny[denominator]:
            raise ConfigError(f"model.llm.tiny.{numerator}", tiny[numerator],
                              f"is not a multiple of model.llm.tiny.{denominator}={tiny[denominator]}",
                              f"choose a multiple of {tiny[denominator]}")


def llm_layer_count(llm: Mapping) -> int | None:
    """Decoder layers of the configured LLM, from its config.json (no weights); None for a hub name."""
    if llm["path"] == TINY_DEMO_LLM:
        return llm["tiny"]["num_layers"]
    config_file = Path(str(llm["path"])).expanduser() / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    return config.get("num_hidden_layers") or (config.get("text_config") or {}).get("num_hidden_layers")


def _check_whisper_layers(encoder: Mapping) -> None:
    """model.audio_encoder.num_layers within the encoder's layers, from its config (no weights)."""
    wanted = encoder.get("num_layers")
    if wanted is None:
        return
    if not _is_missing(encoder.get("path")):
        config_file = Path(str(encoder["path"])).expanduser() / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    else:
        config = encoder.get("config") or {}
    layers = config.get("encoder_layers")
    if layers is not None and wanted > layers:
        raise ConfigError("model.audio_encoder.num_layers", wanted, f"the Whisper encoder has {layers} layers",
                          f"give 1..{layers}, or null for all of them")


def _check_decor_layers(decor: Mapping, num_layers: int | None) -> None:
    """decor.layers (1-indexed) within the LLM; with λ > 0 the set must not be empty (the
    default 2..L-1 is empty for L < 3)."""
    if num_layers is None:
        return
    layers = decor["layers"]
    outside = [layer for layer in layers or [] if layer > num_layers]
    if outside:
        raise ConfigError("decor.layers", layers, f"layer(s) {format_value(outside)} outside the LLM's 1..{num_layers}",
                          f"choose 1-indexed decoder layers, e.g. decor.layers=[{min(2, num_layers)},{max(num_layers - 1, 1)}]")
    if decor["lambda"] > 0 and layers is None and num_layers < 3:
        raise ConfigError("decor.layers", None, f"the paper's default 2..L-1 is empty for a {num_layers}-layer LLM",
                          "set decor.layers=[1] (or more), or decor.lambda=0")


def _corpus_fields(dataclass_type, settings: Mapping, key: str) -> dict:
    """``settings`` as the keyword arguments of ``dataclass_type``; unknown names are errors."""
    names = [field.name for field in fields(dataclass_type)]
    for name, value in settings.items():
        if name not in names:
            suggestion = nearest_key(name, names)
            raise ConfigError(f"{key}.{name}", value, f"not a field of {dataclass_type.__name__}",
                              f"did you mean {key}.{suggestion}?" if suggestion else f"its fields are {', '.join(names)}")
    return {name: tuple(value) if isinstance(value, list) else value for name, value in settings.items()}


def _dataclass_error(dataclass_type, settings: Mapping, key: str, error: Exception) -> ConfigError:
    """A dataclass's own check failing, told with the fields its message names."""
    message = str(error).removeprefix(f"{dataclass_type.__name__}.")
    named = {f.name: f.default for f in fields(dataclass_type) if re.search(rf"\b{f.name}\b", message)}
    value = {name: settings.get(name, default) for name, default in named.items()} if named else dict(settings)
    return ConfigError(key, value, message, f"fix {' or '.join(f'{key}.{name}' for name in named) or key}")


def _build_corpus_config(dataclass_type, settings: Mapping, key: str) -> None:
    arguments = _corpus_fields(dataclass_type, settings, key)
    try:
        dataclass_type(**arguments)
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise _dataclass_error(dataclass_type, settings, key, err) from err


def _check_corpus(data: Mapping, splits: list, split_key: str | None = None) -> None:
    """The corpus of ``data`` has the ``splits`` asked for (by the key ``split_key``; None: the
    training's), its paths are set, and its generator's and training noise's settings are valid."""
    kind = data["kind"]
    if kind == "synthetic":
        from ..data.synthetic import SyntheticCorpusConfig

        _build_corpus_config(SyntheticCorpusConfig, data["synthetic"], "data.synthetic")
    if kind == "espeak":
        from ..data.espeak_corpus import EspeakCorpusConfig

        _build_corpus_config(EspeakCorpusConfig, data.get("espeak") or {}, "data.espeak")
    if kind == "lrs" and _is_missing(data.get("root")):
        raise ConfigError("data.root", data.get("root"), "is not set", HINTS["data.root"])
    for split in splits:
        if split not in CORPUS_SPLITS.get(kind, SPLITS):
            available = CORPUS_SPLITS[kind]
            fix = (f"evaluate on it (scripts/eval.py ckpt=... data={kind}), or choose another corpus" if split_key is None
                   else f"use {split_key}={format_value(list(available)) if split_key == 'splits' else available[0]}")
            raise ConfigError("data", kind, f"has no {split} split, only {', '.join(available)}", fix)
        if kind == "lrs" and _is_missing(data.get(f"{split}_csv")):
            raise ConfigError(f"data.{split}_csv", data.get(f"{split}_csv"), "is not set",
                              f"pass data.{split}_csv=/path/to/the/{split} label CSV")
    if data.get("train_noise") is not None and "train" in splits:
        settings = data["train_noise"]
        _corpus_fields(TrainNoiseConfig, settings, "data.train_noise")
        try:
            TrainNoiseConfig.from_settings(settings)
        except (TypeError, ValueError, FileNotFoundError) as err:
            raise _dataclass_error(TrainNoiseConfig, settings, "data.train_noise", err) from err


@cache
def trainer_parameters() -> tuple[str, ...]:
    """The keyword arguments of ``lightning.Trainer``, read from its source (importing Lightning takes seconds)."""
    package = importlib.util.find_spec("lightning")  # the top-level package: finding it imports nothing
    source = Path(package.origin).parent / "pytorch" / "trainer" / "trainer.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            init = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
            return tuple(a.arg for a in init.args.args + init.args.kwonlyargs if a.arg != "self")
    raise RuntimeError(f"no Trainer class in {source}")


# Trainer arguments the recipe sets itself (pipeline.train).
RECIPE_TRAINER_ARGUMENTS = ("logger", "callbacks", "default_root_dir", "use_distributed_sampler")


def _check_trainer_arguments(trainer: Mapping, defaults: Mapping) -> None:
    """Keys added under ``trainer`` (``+trainer.x=...``) must be ``lightning.Trainer`` arguments."""
    added = [key for key in trainer if key not in defaults]
    if not added:
        return
    allowed = [name for name in trainer_parameters() if name not in RECIPE_TRAINER_ARGUMENTS]
    for key in added:
        if key not in allowed:
            suggestion = nearest_key(key, allowed)
            raise ConfigError(f"trainer.{key}", trainer[key], "not an argument of lightning.Trainer (or one the recipe sets)",
                              f"did you mean trainer.{suggestion}?" if suggestion else "see lightning.Trainer's arguments")


def compression_list(cfg: Mapping) -> list[int]:
    compression = cfg["compression"]
    return [int(compression)] if isinstance(compression, int) else [int(c) for c in compression]
