"""Trainable sink logits: SDPA with a virtual key equals an explicit softmax with an extra column
(causal, padding, eager masks, decoding, GQA), gradients reach the logits, no-op at init, peft."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks.baselines import apply_sink_logits
from avsr_sinks.sinks.baselines.sink_logit import SinkLogits, sink_logit_attention

HEADS, KV_HEADS, HEAD_DIM = 4, 2, 6  # head dim not a multiple of 8: the padding path is exercised


def brute_force(query, key, value, visible, sinks, scaling):
    """Per (batch, head): softmax over [masked q.k * scaling, sink], sink column dropped, times v."""
    batch, heads, q_len, _ = query.shape
    out = torch.zeros(batch, q_len, heads, value.shape[-1], dtype=query.dtype)
    for b in range(batch):
        for h in range(heads):
            kv = h // (heads // key.shape[1])
            logits = query[b, h] @ key[b, kv].T * scaling
            logits = logits.masked_fill(~visible[b, 0], float("-inf"))
            extended = torch.cat([logits, sinks[h].expand(q_len, 1)], dim=1)
            probs = torch.softmax(extended, dim=1)[:, :-1]
            out[b, :, h] = probs @ value[b, kv]
    return out


def attention_module(sinks):
    module = nn.Module()
    module.num_key_value_groups = HEADS // KV_HEADS
    module.sink_logit = SinkLogits(HEADS)
    with torch.no_grad():
        module.sink_logit.logit.copy_(sinks)
    return module.eval()


def cases():
    """(q_len, kv_len, transformers-style mask or None, the visible-key pattern it means)."""
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    pad = torch.ones(2, 5, dtype=torch.bool)
    pad[1, :2] = False  # left padding of sample 1
    padded = (causal[None] & pad[:, None, :])[:, None]
    eager = torch.zeros(2, 1, 5, 5).masked_fill(~padded, torch.finfo(torch.float32).min)
    decode_pad = pad[:, None, None, :].clone()
    return {
        "causal_no_mask": (5, 5, None, causal.expand(2, 1, 5, 5)),
        "bool_padding": (5, 5, padded, padded),
        "eager_float_padding": (5, 5, eager, padded),
        "decode_no_mask": (1, 5, None, torch.ones(2, 1, 1, 5, dtype=torch.bool)),
        "decode_padding": (1, 5, decode_pad, decode_pad),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_matches_explicit_softmax_with_extra_column(name):
    q_len, kv_len, mask, visible = cases()[name]
    torch.manual_seed(0)
    query = torch.randn(2, HEADS, q_len, HEAD_DIM, requires_grad=True)
    key, value = torch.randn(2, KV_HEADS, kv_len, HEAD_DIM), torch.randn(2, KV_HEADS, kv_len, HEAD_DIM)
    sinks = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    scaling = HEAD_DIM ** -0.5
    module = attention_module(sinks)
    out, weights = sink_logit_attention(module, query, key, value, mask, base_function=None, scaling=scaling)
    assert weights is None
    sinks_ref = sinks.clone().requires_grad_(True)
    query_ref = query.detach().clone().requires_grad_(True)
    expected = brute_force(query_ref, key, value, visible, sinks_ref, scaling)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)

    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    grad = module.sink_logit.logit.grad
    assert grad.abs().min() > 0  # every head's sink logit gets a gradient
    torch.testing.assert_close(grad, sinks_ref.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(query.grad, query_ref.grad, rtol=0, atol=1e-5)


@pytest.fixture
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def padded_batch():
    torch.manual_seed(1)
    input_ids = torch.randint(0, 40, (2, 9))
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, :3] = 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_no_op_at_initialisation(model, implementation):
    model.set_attn_implementation(implementation)
    batch = padded_batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        base = model(**batch).logits
        handle = apply_sink_logits(model)
        with_sinks = model(**batch).logits
    torch.testing.assert_close(with_sinks[real], base[real], rtol=0, atol=1e-6)
    assert model.config._attn_implementation == f"avsr_sink_logit_{implementation}"
    handle.remove()
    assert model.config._attn_implementation == implementation
    assert not any("sink_logit" in name for name, _ in model.named_parameters())


def test_decoding_with_cache_matches_full_forward(model):
    torch.manual_seed(2)
    handle = apply_sink_logits(model, init=0.5)
    input_ids = torch.randint(0, 40, (1, 8))
    with torch.no_grad():
        full = model(input_ids=input_ids).logits[:, -1]
        prefix = model(input_ids=input_ids[:, :-1], use_cache=True)
        step = model(input_ids=input_ids[:, -1:], past_key_values=prefix.past_key_values, use_cache=True).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=0, atol=1e-5)
    handle.remove()
    with torch.no_grad():
        assert (model(input_ids=input_ids).logits[:, -1] - full).abs().max() > 1e-4  # the sinks did something


def test_trains_with_lora_after_get_peft_model(model):
    batch = padded_batch()
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        base = peft_model(**batch).logits
    apply_sink_logits(peft_model)
    real = batch["attention_mask"].bool()
    peft_model.train()
    out = peft_model(**batch, labels=batch["input_ids"].masked_fill(~real, -100))
    torch.testing.assert_close(out.logits[real], base[real], rtol=0, atol=1e-6)
    out.loss.backward()
    trainable = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    sink_names = [name for name in trainable if "sink_logit" in name]
    assert len(sink_names) == 2 and all(name.endswith("self_attn.sink_logit.logit") for name in sink_names)
    for name in sink_names:
        grad = trainable[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0
    assert any("lora_" in name and p.grad is not None and p.grad.abs().max() > 0 for name, p in trainable.items())
    assert any("sink_logit" in key for key in peft_model.state_dict())


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_bf16_autocast_follows_float32(model, padded):
    """bf16-mixed (the GPU default): the rotary embedding leaves q, k in float32 and v in bf16,
    which the mask-free causal path must reconcile (it used to stop with a dtype error)."""
    batch = padded_batch()
    if not padded:
        batch = {"input_ids": batch["input_ids"]}
    handle = apply_sink_logits(model, init=0.5)
    real = batch["attention_mask"].bool() if padded else slice(None)
    with torch.no_grad():
        full = model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(**batch).logits
    handle.remove()
    torch.testing.assert_close(mixed[real].float(), full[real], rtol=3e-2, atol=3e-2)
