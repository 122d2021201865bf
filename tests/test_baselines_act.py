"""ACT: the recalibration on hand-worked maps, and on a tiny GQA Llama with padding (prefill and decoding)."""

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks.baselines import act_recalibrate, apply_act

# Rows sum to 1, causal. Column means over the queries that see each key:
# 2.5/5 = 0.5, 1.6/4 = 0.4, 0.4/3 = 0.133, 0.3/2 = 0.15, 0.2/1 = 0.2.
HAND_MAP = [
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.0, 0.0, 0.0],
    [0.4, 0.4, 0.2, 0.0, 0.0],
    [0.4, 0.3, 0.1, 0.2, 0.0],
    [0.2, 0.4, 0.1, 0.1, 0.2],
]
# threshold 0.3 -> sinks {0, 1}; 0 (BOS) kept; column 1 scaled by beta = 0.5; the freed half of
# A[i, 1] goes to keys 2..4 in proportion to their weights. Rows 0 and 1 have no such key.
# row 2: freed 0.2 -> key 2: 0.2 + 0.2 = 0.4
# row 3: freed 0.15 over (0.1, 0.2) -> 0.1 + 0.05 = 0.15, 0.2 + 0.1 = 0.3
# row 4: freed 0.2 over (0.1, 0.1, 0.2) -> 0.15, 0.15, 0.3
HAND_RESULT = [
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.0, 0.0, 0.0],
    [0.4, 0.2, 0.4, 0.0, 0.0],
    [0.4, 0.15, 0.15, 0.3, 0.0],
    [0.2, 0.2, 0.15, 0.15, 0.3],
]


def causal(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


def test_recalibration_equals_hand_computation():
    weights = torch.tensor(HAND_MAP, dtype=torch.float64)
    result = act_recalibrate(weights, causal(5), beta=0.5, threshold=0.3)
    torch.testing.assert_close(result, torch.tensor(HAND_RESULT, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(result.sum(-1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(result[:, 0], weights[:, 0])  # BOS column untouched


def test_every_key_a_sink_leaves_the_map_unchanged():
    # Default threshold 0.1: every column mean is above it, so no key can receive freed weight.
    weights = torch.tensor(HAND_MAP, dtype=torch.float64)
    assert torch.equal(act_recalibrate(weights, causal(5)), weights)


def test_left_padding_counts_only_real_queries():
    # The same 5-token map behind 2 padding positions: hidden keys, and padding queries that see nothing.
    weights = torch.zeros(7, 7, dtype=torch.float64)
    weights[2:, 2:] = torch.tensor(HAND_MAP, dtype=torch.float64)
    visible = torch.zeros(7, 7, dtype=torch.bool)
    visible[2:, 2:] = causal(5)
    result = act_recalibrate(weights, visible, beta=0.5, threshold=0.3)
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[2:, 2:] = torch.tensor(HAND_RESULT, dtype=torch.float64)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)


def brute_force_act(weights, visible, beta, threshold):
    """ACT on one [q, kv] map with explicit loops."""
    q_len, kv_len = weights.shape
    scores = []
    for j in range(kv_len):
        viewers = [i for i in range(q_len) if visible[i, j]]
        scores.append(sum(weights[i, j].item() for i in viewers) / len(viewers) if viewers else 0.0)
    sinks = [j for j in range(kv_len) if scores[j] > threshold]
    reduced, others = sinks[1:], [j for j in range(kv_len) if j not in sinks]
    result = weights.clone()
    for i in range(q_len):
        mass = sum(weights[i, j].item() for j in others)
        if mass == 0:
            continue
        freed = (1 - beta) * sum(weights[i, j].item() for j in reduced)
        for j in reduced:
            result[i, j] = beta * weights[i, j]
        for j in others:
            result[i, j] = weights[i, j] * (1 + freed / mass)
    return result, reduced


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper attention in layer 1, so some columns stand out as sinks
        model.model.layers[1].self_attn.q_proj.weight.mul_(6)
    return model


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(1)
    input_ids = torch.randint(0, 40, (2, 10))
    attention_mask = torch.ones(2, 10, dtype=torch.long)
    attention_mask[1, :3] = 0  # left padding
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def layer_weights(model, batch, layer):
    captured = {}
    hook = model.model.layers[layer].self_attn.register_forward_hook(
        lambda _m, _a, out: captured.update(weights=out[1]))
    with torch.no_grad():
        logits = model(**batch).logits
    hook.remove()
    return captured["weights"], logits


def test_empty_head_list_changes_nothing(model, batch):
    with torch.no_grad():
        base = model(**batch).logits
    handle = apply_act(model, [])
    try:
        with torch.no_grad():
            assert torch.equal(model(**batch).logits, base)
    finally:
        handle.remove()


def test_model_maps_match_brute_force_with_gqa_and_padding(model, batch):
    model.set_attn_implementation("eager")
    try:
        eager_maps, _ = layer_weights(model, batch, layer=1)
    finally:
        model.set_attn_implementation("sdpa")
    beta, threshold = 0.4, 0.15
    handle = apply_act(model, [(1, 0), (1, 2)], beta=beta, threshold=threshold)
    try:
        act_maps, _ = layer_weights(model, batch, layer=1)
    finally:
        handle.remove()
    assert model.config._attn_implementation == "sdpa"
    real = batch["attention_mask"].bool()
    reduced_any = False
    for b in range(2):
        rows = real[b]
        visible = causal(10) & rows[None, :] & rows[:, None]
        for h in range(4):
            got, base = act_maps[b, h][rows][:, rows], eager_maps[b, h][rows][:, rows]
            if h in (1, 3):
                torch.testing.assert_close(got, base, rtol=0, atol=1e-6)  # unlisted heads untouched
                continue
            expected, reduced = brute_force_act(eager_maps[b, h].double(), visible, beta, threshold)
            reduced_any |= bool(reduced)
            torch.testing.assert_close(got.double(), expected[rows][:, rows], rtol=0, atol=1e-6)
            torch.testing.assert_close(got.sum(-1), torch.ones(int(rows.sum())), rtol=0, atol=1e-5)
            first_real = int(rows.nonzero()[0])
            torch.testing.assert_close(act_maps[b, h, :, first_real], eager_maps[b, h, :, first_real] * rows,
                                       rtol=0, atol=1e-6)  # BOS column untouched
    assert reduced_any, "the test map has no sink to reduce; make layer 1's attention sharper"


def decode_step_logits(model, batch, next_ids, handle_factory, remove_before_step):
    """Prefill the batch, then one decoding step; ACT is on for the prefill."""
    handle = handle_factory()
    mask = batch["attention_mask"]
    try:
        with torch.no_grad():
            cache = DynamicCache(config=model.config)
            model(**batch, past_key_values=cache, use_cache=True)
            if remove_before_step:
                handle.remove()
            step = model(input_ids=next_ids, attention_mask=torch.cat([mask, torch.ones_like(next_ids)], -1),
                         position_ids=batch["position_ids"][:, -1:] + 1, past_key_values=cache, use_cache=True)
    finally:
        if not remove_before_step:
            handle.remove()
    return step.logits


def test_decoding_steps_use_the_base_kernel_unless_configured(model, batch):
    next_ids = torch.tensor([[5], [7]])
    heads = [(1, h) for h in range(4)] + [(2, h) for h in range(4)]
    base_step = decode_step_logits(model, batch, next_ids, lambda: apply_act(model, heads, threshold=0.08), True)
    off = decode_step_logits(model, batch, next_ids, lambda: apply_act(model, heads, threshold=0.08), False)
    on = decode_step_logits(model, batch, next_ids,
                            lambda: apply_act(model, heads, threshold=0.08, apply_during_decoding=True), False)
    assert torch.equal(off, base_step)
    assert (on - base_step).abs().max() > 1e-4


def test_bad_arguments_are_refused(model):
    with pytest.raises(ValueError, match="outside the model's 3 layers x 4 heads"):
        apply_act(model, [(3, 0)])
    with pytest.raises(ValueError, match="beta"):
        apply_act(model, [(1, 0)], beta=1.5)
    model.config._attn_implementation = "flex_attention"
    try:
        with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
            apply_act(model, [(1, 0)])
    finally:
        model.config._attn_implementation = "sdpa"
    handle = apply_act(model, [])
    try:
        with pytest.raises(ValueError, match="remove"):
            apply_act(model, [(1, 0)])
    finally:
        handle.remove()
