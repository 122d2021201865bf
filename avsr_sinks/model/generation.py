"""Beam search that runs the prompt once per utterance instead of once per beam.

Hugging Face's ``generate`` copies every input ``num_beams`` times (``repeat_interleave``) before
its first forward, so the prefill, the whole audio-visual prefix through every layer, runs
``num_beams`` times on identical rows: with 15 beams it was 90 % of the demo's beam-search time.
:func:`prefill_once_per_utterance` runs that first forward on one copy of each utterance and
repeats its outputs (the logits and the key/value cache) to the beams. The prefill is still one
forward over the whole prompt, so whatever patches the attention (ACT's recalibration, which
treats a prefill differently from a decoding step) sees the same call as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers.cache_utils import Cache


def _repeat_rows(value, repeats: int):
    """``value`` with every batch row repeated ``repeats`` times in place (rows b*r .. b*r+r-1)."""
    if isinstance(value, torch.Tensor):
        return value.repeat_interleave(repeats, dim=0)
    if isinstance(value, Cache):
        value.batch_repeat_interleave(repeats)
        return value
    if isinstance(value, tuple):
        return tuple(_repeat_rows(v, repeats) for v in value)
    return value


@contextlib.contextmanager
def prefill_once_per_utterance(causal_lm, num_beams: int) -> Iterator[None]:
    """Within the block, ``causal_lm.generate`` (a transformers causal LM, not a peft wrapper)
    prefills one row per utterance and hands ``num_beams`` copies of the result to the search."""
    if num_beams == 1:
        yield
        return
    beam_prefill = causal_lm._prefill  # generate's first forward (transformers >= 5)

    def prefill(input_ids, generation_config, model_kwargs, **kwargs):
        rows = input_ids.shape[0]
        one_per_utterance = {k: v[::num_beams] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == rows else v
                             for k, v in model_kwargs.items()}
        outputs = beam_prefill(input_ids[::num_beams], generation_config, one_per_utterance, **kwargs)
        for key, value in outputs.items():
            outputs[key] = _repeat_rows(value, num_beams)
        return outputs

    causal_lm._prefill = prefill
    try:
        yield
    finally:
        del causal_lm._prefill  # back to the class's method
