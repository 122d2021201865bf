"""The LLM: any local Hugging Face Llama-family causal LM, with its tokenizer, the added
modality tokens, and LoRA through peft.

New tokens (``<audio> </audio> <video> </video>``, a pad token, and a BOS where the tokenizer
has none) get new embedding rows; :mod:`.added_tokens` trains exactly those rows (and, where
the output layer is tied to the input embedding, the output rows they share), so a checkpoint
holds only them, not the whole embedding matrix. LoRA is peft's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from .added_tokens import train_added_token_rows

MODALITY_TOKENS = ("<audio>", "</audio>", "<video>", "</video>")
PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|bos|>"


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class SpecialTokenIds:
    bos: int
    eos: int
    pad: int
    audio_start: int
    audio_end: int
    video_start: int
    video_end: int
    added: list[int]


def add_special_tokens(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds:
    """Add the modality delimiters, a pad token and (if missing) a BOS; return their ids."""
    before = len(tokenizer)
    extra: dict[str, object] = {"additional_special_tokens": [t for t in MODALITY_TOKENS if t not in tokenizer.get_vocab()]}
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        extra["pad_token"] = PAD_TOKEN
    if tokenizer.bos_token is None:
        extra["bos_token"] = BOS_TOKEN
    if tokenizer.eos_token is None:
        raise ValueError("the LLM's tokenizer has no EOS token; the transcript needs one to end generation")
    tokenizer.add_special_tokens(extra, replace_extra_special_tokens=False)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in MODALITY_TOKENS}
    return SpecialTokenIds(
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        pad=tokenizer.pad_token_id,
        audio_start=ids["<audio>"],
        audio_end=ids["</audio>"],
        video_start=ids["<video>"],
        video_end=ids["</video>"],
        added=list(range(before, len(tokenizer))),
    )


def load_llm(
    path: str | Path,
    lora: LoraSettings | None = LoraSettings(),
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    activation_checkpointing: bool = False,
):
    """Load a causal LM and tokenizer from a local directory (or hub name), add the special
    tokens, freeze the base, and wrap it with LoRA (``lora=None`` keeps it frozen, no adapter).

    ``activation_checkpointing`` recomputes each decoder layer in the backward pass instead of
    keeping its activations (transformers' own, non-reentrant: it replays the same dropout masks).
    transformers checkpoints the layers' ``forward``, not ``__call__``, so forward hooks on a
    decoder layer (the decorrelation loss's) see its output once; hooks on modules inside a layer
    run again in the replay, which is what the gated-attention pre-hook needs.

    Returns ``(model, tokenizer, SpecialTokenIds)``.
    """
    if isinstance(path, Path) or str(path).startswith((".", "/", "~")):
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"LLM directory {path} does not exist: set model.llm.path to a Hugging Face model folder")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation=attn_implementation)
    return prepare_llm(model, tokenizer, lora, activation_checkpointing)


def prepare_llm(model, tokenizer: PreTrainedTokenizerBase, lora: LoraSettings | None = LoraSettings(),
                activation_checkpointing: bool = False):
    """What :func:`load_llm` does once the model is loaded, for a model built in memory (the
    benchmarks' random Llama at the paper's size, never written to disk): the special tokens,
    their embedding rows, a frozen base, activation checkpointing and LoRA. With LoRA, the rows
    of the added tokens train too (:func:`.added_tokens.train_added_token_rows`, after peft, so
    that peft never sees them). Returns ``(model, tokenizer, SpecialTokenIds)``."""
    special = add_special_tokens(tokenizer)
    if special.added:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = special.pad
    model.generation_config.pad_token_id = special.pad
    model.requires_grad_(False)
    if activation_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    if lora is None:
        return model, tokenizer, special
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` inside get_peft_model.
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    if special.added:
        train_added_token_rows(peft_model.get_base_model(), special.added)
    return peft_model, tokenizer, special
