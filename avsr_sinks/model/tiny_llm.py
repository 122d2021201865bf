"""A tiny random Llama with a word-level tokenizer, saved as a normal Hugging Face folder.

The embedded demo and the tests load it through the same ``from_pretrained`` path as a real
Llama, so nothing in the model code special-cases it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<unk>", "<s>", "</s>"]
PROMPT_WORDS = ["transcribe", "speech", "and", "video", "to", "text."]


def build_tiny_llm(
    directory: str | Path,
    words: list[str],
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write (once) a random Llama and a whitespace word-level tokenizer over ``words`` plus
    the prompt words. Returns the directory; an existing complete folder is reused."""
    directory = Path(directory)
    marker = directory / "tiny_llm.json"
    # Unit-scale init (1/sqrt(width)), not Llama's 0.02: with tied embeddings 0.02 caps every logit near
    # +-1.3 after the final RMSNorm, so the frozen head could never express a confident prediction.
    init_std = hidden_size ** -0.5
    spec = dict(words=sorted(set(words)), init_std=init_std, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                num_kv_heads=num_kv_heads, intermediate_size=intermediate_size, seed=seed)
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return directory
    vocab_words = SPECIALS + [w for w in dict.fromkeys(PROMPT_WORDS + spec["words"]) if w not in SPECIALS]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab_words)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(
        vocab_size=len(vocab_words),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        initializer_range=init_std,
    )
    directory.mkdir(parents=True, exist_ok=True)
    # A forked generator: the caller's random state (the run's seed) is the same whether the folder
    # was written now or reused, so a run does not depend on what the cache held.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    marker.write_text(json.dumps(spec))
    return directory
