"""Gated attention: exact no-op at init, the gate's effect on a hand-set case, gradients, peft."""

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks.baselines import apply_gated_attention

HEADS, HEAD_DIM = 4, 8


@pytest.fixture
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=HEADS, num_key_value_heads=2, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def padded_batch():
    torch.manual_seed(1)
    input_ids = torch.randint(0, 40, (2, 9))
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, :3] = 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def o_proj_input(model, batch, layer=0):
    """The attention output fed to ``o_proj`` of ``layer``, and the attention module's input."""
    captured = {}
    attention = model.model.layers[layer].self_attn
    hooks = [attention.o_proj.register_forward_pre_hook(lambda _m, args: captured.update(o_in=args[0])),
             attention.register_forward_pre_hook(lambda _m, _a, kw: captured.update(x=kw["hidden_states"]),
                                                 with_kwargs=True)]
    with torch.no_grad():
        model(**batch)
    for hook in hooks:
        hook.remove()
    return captured["o_in"], captured["x"]


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_exact_no_op_at_initialisation(model, implementation):
    model.set_attn_implementation(implementation)
    batch = padded_batch()
    with torch.no_grad():
        base = model(**batch).logits
        handle = apply_gated_attention(model)
        gated = model(**batch).logits
    torch.testing.assert_close(gated, base, rtol=0, atol=1e-6)
    handle.remove()
    assert model.config._attn_implementation == implementation
    assert not any("attn_gate" in name for name, _ in model.named_parameters())


def test_gate_scales_each_head_as_computed_by_hand(model):
    batch = padded_batch()
    base_out, x = o_proj_input(model, batch)
    handle = apply_gated_attention(model)
    gate = model.model.layers[0].self_attn.attn_gate
    with torch.no_grad():
        # Biases log 3, 0, -log 3, 0 give 2*sigmoid: 2*3/4 = 1.5, 1, 2*1/4 = 0.5, and for head 3
        # an input-dependent gate 2*sigmoid(x_0) from one weight.
        gate.proj.bias.copy_(torch.tensor([math.log(3), 0.0, -math.log(3), 0.0]))
        gate.proj.weight[3, 0] = 1.0
    gated_out, _ = o_proj_input(model, batch)
    handle.remove()
    per_head = base_out.unflatten(-1, (HEADS, HEAD_DIM))
    head3 = 2 / (1 + torch.exp(-x[..., 0]))
    expected = torch.stack([1.5 * per_head[..., 0, :], per_head[..., 1, :], 0.5 * per_head[..., 2, :],
                            head3[..., None] * per_head[..., 3, :]], dim=-2).flatten(-2)
    torch.testing.assert_close(gated_out, expected, rtol=0, atol=1e-6)


def test_trains_with_lora_after_get_peft_model(model):
    batch = padded_batch()
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        base = peft_model(**batch).logits
    handle = apply_gated_attention(peft_model)
    peft_model.train()
    real = batch["attention_mask"].bool()
    out = peft_model(**batch, labels=batch["input_ids"].masked_fill(~real, -100))
    torch.testing.assert_close(out.logits, base, rtol=0, atol=1e-6)
    out.loss.backward()
    trainable = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    gate_names = [name for name in trainable if "attn_gate" in name]
    assert len(gate_names) == 4  # weight and bias in each of the 2 layers
    for name in gate_names:
        grad = trainable[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0
    assert all(g.proj.weight.dtype == torch.float32 for g in handle.gates)
    assert any("attn_gate" in key for key in peft_model.state_dict())
