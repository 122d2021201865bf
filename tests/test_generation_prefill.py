"""Beam search with the prompt prefilled once per utterance gives Hugging Face's own results
(prefilled once per beam): same tokens and scores, with left padding, and with ACT on the prefill."""

import pytest
import torch

from avsr_sinks.model.generation import prefill_once_per_utterance
from avsr_sinks.sinks.baselines import apply_act

BEAMS = 4


def _prompts(llm, seed=0):
    """Three left-padded prompts of 9, 6 and 3 random embeddings."""
    width = llm.config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(3, 9, width, generator=generator)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :6] = 0
    return embeds * mask[..., None], mask


def _beam_search(llm, special, embeds, mask):
    with torch.no_grad():
        return llm.generate(inputs_embeds=embeds, attention_mask=mask, num_beams=BEAMS, max_new_tokens=6,
                            do_sample=False, eos_token_id=special.eos, pad_token_id=special.pad,
                            return_dict_in_generate=True, output_scores=True)


def _compare(llm, special, embeds, mask):
    causal_lm = llm.get_base_model()
    rows_seen = []
    hook = causal_lm.register_forward_pre_hook(
        lambda _m, args, kwargs: rows_seen.append(kwargs["inputs_embeds"].shape[0] if kwargs.get("inputs_embeds") is not None
                                                  else None), with_kwargs=True)
    try:
        per_beam = _beam_search(llm, special, embeds, mask)
        prefill_rows_per_beam = rows_seen[0]
        rows_seen.clear()
        with prefill_once_per_utterance(causal_lm, BEAMS):
            once = _beam_search(llm, special, embeds, mask)
    finally:
        hook.remove()
    assert prefill_rows_per_beam == 3 * BEAMS and rows_seen[0] == 3  # the prefill ran one row per utterance
    assert torch.equal(once.sequences, per_beam.sequences)
    torch.testing.assert_close(once.sequences_scores, per_beam.sequences_scores, rtol=0, atol=1e-5)
    assert "_prefill" not in vars(causal_lm)  # the class's method is back


def test_prefill_once_per_utterance_matches_per_beam_prefill(tiny_llm):
    llm, _, special = tiny_llm
    llm.eval()
    _compare(llm, special, *_prompts(llm))


def test_prefill_once_per_utterance_keeps_act_on_the_whole_prompt(tiny_llm):
    llm, _, special = tiny_llm
    llm.eval()
    embeds, mask = _prompts(llm, seed=1)
    plain = _beam_search(llm, special, embeds, mask).sequences_scores
    handle = apply_act(llm, [(1, h) for h in range(4)] + [(2, h) for h in range(4)], threshold=0.05)
    try:
        assert not torch.allclose(_beam_search(llm, special, embeds, mask).sequences_scores, plain)  # ACT acts
        _compare(llm, special, embeds, mask)
    finally:
        handle.remove()


def test_prefill_is_restored_when_generation_fails(tiny_llm):
    llm, _, special = tiny_llm
    causal_lm = llm.get_base_model()
    with pytest.raises(RuntimeError, match="stop"):
        with prefill_once_per_utterance(causal_lm, BEAMS):
            raise RuntimeError("stop")
    assert "_prefill" not in vars(causal_lm)
