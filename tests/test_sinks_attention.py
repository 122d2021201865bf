"""Eq. 5 sink scores from chunked q/k against eager attention weights (GQA, left/right padding)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks import attention_sink_scores


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def brute_force_alpha(model_dir, input_ids, attention_mask, position_ids):
    """Column sums of eager attention maps over valid queries k >= i, / (H * count)."""
    eager = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        maps = eager(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     output_attentions=True).attentions
    batch, length = input_ids.shape
    alpha = torch.zeros(len(maps), batch, length)
    for layer, weights in enumerate(maps):
        heads = weights.shape[1]
        for b in range(batch):
            for i in range(length):
                if not attention_mask[b, i]:
                    continue
                queries = [k for k in range(i, length) if attention_mask[b, k]]
                total = sum(weights[b, h, k, i].item() for h in range(heads) for k in queries)
                alpha[layer, b, i] = total / (heads * len(queries))
    return alpha


@pytest.mark.parametrize("side", ["right", "left"])
def test_alpha_matches_eager_attention_with_padding_and_gqa(model_dir, side):
    torch.manual_seed(1)
    lengths = [9, 6]
    length = max(lengths)
    input_ids = torch.randint(1, 50, (2, length))
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    for b, n in enumerate(lengths):
        if side == "right":
            attention_mask[b, :n] = 1
        else:
            attention_mask[b, length - n:] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    expected = brute_force_alpha(model_dir, input_ids, attention_mask, position_ids)

    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    alpha = attention_sink_scores(model, attention_mask=attention_mask, input_ids=input_ids,
                                  position_ids=position_ids, query_chunk=4)
    assert alpha.shape == (3, 2, length)
    torch.testing.assert_close(alpha, expected, atol=1e-5, rtol=0)
    per_head = attention_sink_scores(model, attention_mask=attention_mask, input_ids=input_ids,
                                     position_ids=position_ids, per_head=True, query_chunk=3)
    assert per_head.shape == (3, 2, 4, length)
    torch.testing.assert_close(per_head.mean(2), expected, atol=1e-5, rtol=0)


def test_alpha_without_mask_on_inputs_embeds(model_dir):
    torch.manual_seed(2)
    input_ids = torch.randint(1, 50, (1, 7))
    mask = torch.ones_like(input_ids)
    expected = brute_force_alpha(model_dir, input_ids, mask, torch.arange(7)[None])
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    embeds = model.get_input_embeddings()(input_ids)
    alpha = attention_sink_scores(model, inputs_embeds=embeds, query_chunk=2)
    torch.testing.assert_close(alpha, expected, atol=1e-5, rtol=0)


def test_alpha_on_peft_model_includes_lora(model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    wrapped = get_peft_model(LlamaForCausalLM.from_pretrained(model_dir),
                             LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    for name, parameter in wrapped.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # LoRA must change the scores to be seen
    wrapped.eval()
    input_ids = torch.randint(1, 50, (1, 8))
    mask = torch.ones_like(input_ids)
    alpha = attention_sink_scores(wrapped, attention_mask=mask, input_ids=input_ids)
    merged_dir = tmp_path / "merged"
    wrapped.merge_and_unload().save_pretrained(merged_dir)
    expected = brute_force_alpha(merged_dir, input_ids, mask, torch.arange(8)[None])
    torch.testing.assert_close(alpha, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, brute_force_alpha(model_dir, input_ids, mask, torch.arange(8)[None]), atol=1e-3)


def test_alpha_counts_the_share_taken_by_trainable_sink_logits(model_dir):
    from avsr_sinks.sinks.baselines import apply_sink_logits

    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    input_ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(3))
    before = attention_sink_scores(model, input_ids=input_ids, per_head=True)
    apply_sink_logits(model)
    first_attention = model.model.layers[0].self_attn
    with torch.no_grad():  # heads 0-1: a sink logit far above any attention logit; heads 2-3: far below
        first_attention.sink_logit.logit.copy_(torch.tensor([60.0, 60.0, -60.0, -60.0]))
    after = attention_sink_scores(model, input_ids=input_ids, per_head=True)
    # Layer 0 sees the same input: the sink column takes all of heads 0-1 (e^-60 of it is left)
    # and none of heads 2-3.
    assert after[0, :, :2].abs().max() < 1e-20
    torch.testing.assert_close(after[0, :, 2:], before[0, :, 2:], rtol=0, atol=1e-6)
