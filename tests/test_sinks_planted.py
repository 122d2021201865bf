"""A tiny Llama with hand-set weights: token 5 shares BOS's direction, so layer 1 attends to it
and its GLU writes a massive value into feature 9. The toolkit must find exactly that, and the
rotation of token 5 towards its nearest non-sink must remove both."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks import (SinkRule, attention_sink_scores, massive_activations, residual_contributions,
                              residual_streams, rotation_effect, sink_mask, sink_positions)

HIDDEN, HEAD_DIM, FEATURE, PLANTED, LENGTH = 16, 8, 9, 5, 16
SLOW_ROPE_DIM = HEAD_DIM // 2 - 1  # the pair with the lowest rotary frequency: almost no rotation


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=20, hidden_size=HIDDEN, intermediate_size=8, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, attention_bias=True, rope_theta=1e8,
                         bos_token_id=1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            for name, parameter in layer.named_parameters():
                if "norm" not in name:
                    parameter.zero_()
        embed = model.model.embed_tokens.weight
        embed.normal_(0, 0.3)
        embed[:, 0] = -0.5  # ordinary tokens point away from the sink direction e_0
        embed[1] = 0.0
        embed[1, 0] = 1.0  # BOS
        embed[7] = embed[1] + 0.01 * torch.randn(HIDDEN)  # the planted token: aligned with BOS
        embed[7, 0] = 1.0
        layer = model.model.layers[1]
        layer.self_attn.q_proj.bias[SLOW_ROPE_DIM] = 10.0  # one constant query for every token
        layer.self_attn.q_proj.bias[HEAD_DIM + SLOW_ROPE_DIM] = 10.0
        layer.self_attn.k_proj.weight[SLOW_ROPE_DIM, 0] = 5.0  # keys large only along e_0
        layer.mlp.gate_proj.weight[0, 0] = 20.0  # fires only on e_0
        layer.mlp.up_proj.weight[0, 0] = 1.0
        layer.mlp.down_proj.weight[FEATURE, 0] = 50.0  # writes into feature 9
    path = tmp_path_factory.mktemp("planted")
    model.save_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path).eval()
    ids = torch.randint(8, 20, (1, LENGTH))
    ids[0, 0], ids[0, PLANTED] = 1, 7
    return model, ids


def test_toolkit_finds_the_planted_sink_and_feature(planted):
    model, ids = planted
    alpha = attention_sink_scores(model, input_ids=ids)
    rows = sink_positions(alpha, rule=SinkRule())
    assert [row["intermediate"] for row in rows] == [[], [PLANTED], []]  # layers 0, 2 attend uniformly
    assert rows[1]["bos_is_sink"]
    streams = residual_streams(model, input_ids=ids)
    massive = massive_activations(streams, tau=1e3)
    found = massive["massive"][1, 0].nonzero().tolist()
    assert found == [[0, FEATURE], [PLANTED, FEATURE]]  # BOS and the planted token, feature 9 only
    assert massive["massive"][0].sum() == 0
    origin = residual_contributions(model, sink_mask(alpha)[:, 0].any(0)[None], input_ids=ids)
    assert origin[1]["mlp_norm_sink"] > 100 * origin[1]["mlp_norm_other"]
    assert origin[1]["gate_sink"] > 0 > origin[1]["gate_other"]
    assert origin[1]["top_glu_features"][0] == 0


def test_rotation_away_from_bos_removes_sink_and_massive_activation(planted):
    model, ids = planted
    sinks = torch.zeros(LENGTH, dtype=torch.bool)
    sinks[[0, PLANTED]] = True
    effect = rotation_effect(model, layer=0, position=PLANTED, towards="nearest", sinks=sinks, input_ids=ids)
    # nearest non-sink by brute force: highest cosine with the planted state after layer 0.
    states = residual_streams(model, input_ids=ids)[0, 0]
    cosine = [(states[j] @ states[PLANTED] / (states[j].norm() * states[PLANTED].norm())).item()
              for j in range(LENGTH) if j not in (0, PLANTED)]
    candidates = [j for j in range(LENGTH) if j not in (0, PLANTED)]
    assert effect["target"] == candidates[max(range(len(cosine)), key=cosine.__getitem__)]
    assert effect["before"]["massive_features"][1] == [FEATURE]
    assert effect["after"]["massive_features"][1] == []
    assert effect["before"]["alpha"][1] > 0.3 and effect["after"]["alpha"][1] < 0.05
    towards_bos = rotation_effect(model, layer=0, position=3, towards="bos", input_ids=ids)
    assert towards_bos["target"] == 0 and towards_bos["after"]["massive_features"][1] == [FEATURE]
