"""Detection, Eq. 6 and Eq. 7 against hand computations and brute force on a tiny Llama."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks import (SinkRule, bos_cosine_similarity, massive_activations, pairwise_cosine,
                              residual_streams, sink_positions)


def test_sink_rule_by_hand():
    # layer 0: mean of valid [0.6, 0.1, 0.1, 0.2] = 0.25 -> only 0.6 > 2 * 0.25; position 4 is padding.
    alpha = torch.tensor([[[0.6, 0.1, 0.1, 0.2, 9.0]], [[0.3, 0.05, 0.6, 0.05, 0.0]]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    rows = sink_positions(alpha, mask, SinkRule(ratio=2.0))
    assert rows[0] == {"layer": 0, "bos_is_sink": True, "intermediate": []}
    assert rows[1] == {"layer": 1, "bos_is_sink": False, "intermediate": [2]}
    rows = sink_positions(alpha, mask, SinkRule(ratio=1.0, min_alpha=0.5))
    assert rows[1]["intermediate"] == [2] and rows[0]["bos_is_sink"]


def test_left_padding_bos_is_first_valid():
    alpha = torch.tensor([[[0.0, 0.0, 0.8, 0.1, 0.1]]])
    rows = sink_positions(alpha, torch.tensor([[0, 0, 1, 1, 1]]), SinkRule(ratio=2.0))
    assert rows[0]["bos_is_sink"] and rows[0]["intermediate"] == []


def test_massive_activations_by_hand_excludes_padding():
    states = torch.ones(1, 2, 3, 4)
    states[0, 0, 1, 2] = 5000.0
    states[0, 1, 2, :] = 1e6  # padding: must not count nor move the median
    out = massive_activations(states, torch.tensor([[1, 1, 1], [1, 1, 0]]), tau=1e3, top_k=2)
    assert out["median"].tolist() == [1.0]
    assert out["massive"].nonzero().tolist() == [[0, 0, 1, 2]]
    assert out["top_values"][0].tolist() == [5000.0, 1.0]
    assert out["top_where"][0, 0].tolist() == [0, 1, 2]
    assert out["top_ratio"][0, 0].item() == 5000.0


def test_cosine_and_streams_against_output_hidden_states(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(1, 40, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    streams = residual_streams(model, input_ids=ids, attention_mask=mask, position_ids=positions)
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                          output_hidden_states=True).hidden_states
    # hidden_states[l + 1] is layer l's output except the last (which is after the final norm).
    torch.testing.assert_close(streams[0], reference[1])
    cosine = bos_cosine_similarity(streams, mask)
    for layer in range(2):
        for b, bos in ((0, 2), (1, 0)):
            for i in range(6):
                x, y = streams[layer, b, i], streams[layer, b, bos]
                expected = 0.0 if not mask[b, i] else (x @ y / (x.norm() * y.norm())).item()
                assert abs(cosine[layer, b, i].item() - expected) < 1e-5
    matrix = pairwise_cosine(streams[1, 1])
    x = streams[1, 1]
    assert abs(matrix[1, 4].item() - (x[1] @ x[4] / (x[1].norm() * x[4].norm())).item()) < 1e-5


def test_text_token_labels_with_left_padding(tiny_llm):
    from avsr_sinks.sinks import text_token_labels

    _, tokenizer, _ = tiny_llm
    ids = tokenizer(["one two", "red"], add_special_tokens=False)["input_ids"]
    row0, row1 = ids[0], ids[1]
    batch = torch.tensor([[0, *row0], [0, 0, *row1]])
    mask = torch.tensor([[0, 1, 1], [0, 0, 1]])
    assert text_token_labels(tokenizer, batch, mask) == [["PAD", "BOS", "two"], ["PAD", "PAD", "BOS"]]
