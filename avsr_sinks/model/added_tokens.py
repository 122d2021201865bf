"""Training only the embedding rows of the tokens added to the LLM's vocabulary.

The tokens :func:`~avsr_sinks.model.llm.add_special_tokens` adds (``<audio> </audio> <video>
</video>``, a pad token, a BOS where the tokenizer has none) get new rows at the end of the
embedding matrix, and only those rows train. peft's ``trainable_token_indices`` did that by
writing the trained rows into a copy of the whole matrix on every forward (``index_copy``), for
the input embedding and again for the tied output layer, and autograd then made a gradient of
the whole matrix for each: at Llama-3.2-1B's 128k x 2048 vocabulary, 1 GiB apiece in float32.
``benchmarks/bench_added_tokens.py`` measured the embedding layers of a step with peft's rows at
4.1x the time and 16x the memory of frozen layers (2069 vs 127 MiB), and with these modules at
the frozen layers' time and memory.

:class:`AddedTokenEmbedding` keeps the frozen matrix as it is and the added rows as a small
``[n_added, d]`` parameter (``added_rows``, started from the rows transformers' resizing gave
them): old ids read the frozen matrix, added ids the parameter, and no copy of the matrix is
made. Where the LLM ties its output layer to the input embedding (``tie_word_embeddings``),
:class:`AddedTokenOutput` computes the logits of the old ids from the frozen matrix and those
of the added ids from the same ``added_rows``. An untied output layer stays as it is, frozen
(peft trained the input rows only there too).

The values are peft's exactly: peft's ``trainable_tokens_delta`` is not a difference but the
rows themselves (it replaces the rows of the matrix), so an old checkpoint's delta is the new
``added_rows`` (:func:`upgrade_peft_token_keys`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ADDED_ROWS = "added_rows"
# peft's key for the trained rows of a ``trainable_token_indices`` layer (adapter "default").
_PEFT_ROWS = re.compile(r"^(?P<module>.*)\.token_adapter\.trainable_tokens_delta\.default$")


def _contiguous_block(ids: Sequence[int], rows: int) -> tuple[int, int]:
    """(first, count) of ``ids``, which must be consecutive ids inside a matrix of ``rows``."""
    ids = list(ids)
    if not ids or ids != list(range(ids[0], ids[0] + len(ids))) or ids[0] < 0 or ids[-1] >= rows:
        raise ValueError(f"the added token ids must be consecutive rows of the {rows}-row embedding, got {ids}")
    return ids[0], len(ids)


class AddedTokenEmbedding(nn.Module):
    """An input embedding whose rows ``first .. first + count - 1`` are the trainable
    ``added_rows``; every other id reads the frozen ``base`` embedding (whose own copy of the
    added rows is left at their initial values and never read)."""

    def __init__(self, base: nn.Embedding, added_ids: Sequence[int]) -> None:
        super().__init__()
        if type(base) is not nn.Embedding or base.max_norm is not None or base.sparse:
            raise TypeError(f"training the added token rows needs a plain nn.Embedding input layer, got {base}")
        self.first, self.count = _contiguous_block(added_ids, base.num_embeddings)
        self.num_embeddings, self.embedding_dim, self.padding_idx = base.num_embeddings, base.embedding_dim, base.padding_idx
        self.base = base.requires_grad_(False)
        self.added_rows = nn.Parameter(base.weight.detach()[self.first:self.first + self.count].clone())
        # The frozen matrix's padding row gets no gradient; where it is an added row, neither does its parameter row.
        pad = base.padding_idx
        self.added_padding_idx = pad - self.first if pad is not None and self.first <= pad < self.first + self.count else None

    @property
    def weight(self) -> torch.Tensor:
        """The matrix the lookup reads, as a detached copy (for inspection: no forward uses it)."""
        base = self.base.weight.detach()
        return torch.cat([base[:self.first], self.rows_in_base_dtype().detach(), base[self.first + self.count:]])

    def rows_in_base_dtype(self) -> torch.Tensor:
        """``added_rows`` in the frozen matrix's dtype (the float32 master rows beside a bf16 base)."""
        return self.added_rows.to(self.base.weight.dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        frozen = F.embedding(input_ids, self.base.weight)
        offset = input_ids - self.first
        added = (offset >= 0) & (offset < self.count)
        trained = F.embedding(offset.clamp(0, self.count - 1), self.rows_in_base_dtype(), padding_idx=self.added_padding_idx)
        return torch.where(added.unsqueeze(-1), trained, frozen)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, trainable rows {self.first}..{self.first + self.count - 1}"


class AddedTokenOutput(nn.Module):
    """The output layer tied to an :class:`AddedTokenEmbedding`: the logits of the added ids
    come from its ``added_rows``, the others from the frozen tied matrix (``base``, the original
    bias-free ``nn.Linear``). The embedding is held outside the module tree, so that its rows
    are saved once, under the input embedding."""

    def __init__(self, base: nn.Linear, embedding: AddedTokenEmbedding) -> None:
        super().__init__()
        if type(base) is not nn.Linear or base.bias is not None:
            raise TypeError(f"a tied output layer with trainable added rows must be a bias-free nn.Linear, got {base}")
        if base.weight is not embedding.base.weight:
            raise ValueError("the config ties the output layer to the input embedding, but they hold different matrices")
        self.base = base.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self._embedding = [embedding]

    @property
    def embedding(self) -> AddedTokenEmbedding:
        return self._embedding[0]

    @property
    def weight(self) -> torch.Tensor:
        """The effective output matrix, as a detached copy (for inspection: no forward uses it)."""
        return self.embedding.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        embedding, frozen = self.embedding, self.base.weight
        first, end = embedding.first, embedding.first + embedding.count
        parts = [F.linear(hidden, frozen[:first]), F.linear(hidden, embedding.rows_in_base_dtype())]
        if end < frozen.shape[0]:
            parts.append(F.linear(hidden, frozen[end:]))
        return torch.cat(parts, dim=-1)


def ties_output_to_input(causal_lm) -> bool:
    """Whether the LLM's config ties its output layer to its input embedding (as peft decides)."""
    config = causal_lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(text_config, "tie_word_embeddings", False))


def train_added_token_rows(causal_lm, added_ids: Sequence[int]) -> AddedTokenEmbedding:
    """Make the rows of ``added_ids`` (consecutive, e.g. ``SpecialTokenIds.added``) the only
    trainable part of the embeddings of ``causal_lm`` (a transformers causal LM, after
    ``resize_token_embeddings``), and of its output layer where the config ties the two.
    Returns the new input embedding."""
    embedding = AddedTokenEmbedding(causal_lm.get_input_embeddings(), added_ids)
    if ties_output_to_input(causal_lm):
        causal_lm.set_output_embeddings(AddedTokenOutput(causal_lm.get_output_embeddings(), embedding))
    causal_lm.set_input_embeddings(embedding)
    return embedding


def upgrade_peft_token_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict with peft's trained token rows under this module's key: the
    input embedding's ``<path>.token_adapter.trainable_tokens_delta.default`` becomes
    ``<path>.added_rows`` (the same values: peft stored the rows, not a difference), and the
    tied output layer's copy of them (``...lm_head.token_adapter...``, the same tensor) is
    dropped. Other keys, and states without peft's keys, come back unchanged."""
    upgraded = {}
    for key, value in state.items():
        match = _PEFT_ROWS.match(key)
        if match is None:
            upgraded[key] = value
        elif not match["module"].endswith("lm_head"):
            upgraded[f"{match['module']}.{ADDED_ROWS}"] = value
    return upgraded
