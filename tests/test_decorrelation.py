"""The decorrelation loss against a brute-force computation from output_hidden_states."""

import pytest
import torch

from avsr_sinks.model.avsr import DecorrelationSettings, LlamaAVSR
from avsr_sinks.sinks import decorrelation_loss
from conftest import FrameEncoder


def _brute_force(hidden_states, attention_mask, layers, token_mask=None):
    """Eq. 10 per sample with explicit loops, then the mean over samples."""
    per_sample = []
    for b in range(attention_mask.shape[0]):
        valid = [i for i in range(attention_mask.shape[1]) if attention_mask[b, i]]
        bos = valid[0]
        tokens = [i for i in valid[1:] if token_mask is None or token_mask[b, i]]
        total = 0.0
        for l in layers:
            h = hidden_states[l][b].double()
            for i in tokens:
                total += (torch.dot(h[i], h[bos]) / (h[i].norm() * h[bos].norm())).item() ** 2
        per_sample.append(total / (len(tokens) * len(layers)))
    return sum(per_sample) / len(per_sample)


def _model(tiny_llm, weight, scope="all", layers=None):
    llm, tok, special = tiny_llm
    return LlamaAVSR(llm, tok, special, "asr", [2], audio_encoder=FrameEncoder("audio", hop=100),
                     decorrelation=DecorrelationSettings(weight=weight, scope=scope, layers=layers))


BATCH = {"audio": torch.randn(3, 1200, generator=torch.Generator().manual_seed(1)),
         "audio_lengths": torch.tensor([1200, 500, 800]), "text": ["one two", "red blue four", "three"], "ids": ["a", "b", "c"]}


@pytest.mark.parametrize("scope", ["all", "prefix"])
def test_model_loss_matches_brute_force_from_all_hidden_states(tiny_llm, scope):
    model = _model(tiny_llm, weight=100.0, scope=scope)
    out = model(BATCH)
    inputs = model.assemble(BATCH)
    with torch.no_grad():
        hidden = model.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                           position_ids=inputs.position_ids, output_hidden_states=True).hidden_states
    # hidden[l] is the output of layer l (1-indexed); the paper's S = 2..L-1 = {2, 3} for L = 4
    expected = _brute_force(hidden, inputs.attention_mask, [2, 3], inputs.prefix_mask if scope == "prefix" else None)
    assert out.decor.item() == pytest.approx(expected, rel=1e-5)
    assert out.loss.item() == pytest.approx(out.ce.item() + 100.0 * expected, rel=1e-5)


def test_left_padding_uses_first_valid_token_as_bos():
    torch.manual_seed(0)
    h = torch.randn(2, 2, 5, 8)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    expected = _brute_force(list(h), mask, [0, 1])
    assert decorrelation_loss(h, mask).item() == pytest.approx(expected, rel=1e-5)
    # padding content never matters
    h2 = h.clone()
    h2[:, 0, :2] = 1e6
    assert decorrelation_loss(h2, mask).item() == pytest.approx(expected, rel=1e-5)


def test_known_values_and_bf16_zero_vectors():
    bos = torch.tensor([1.0, 0.0])
    # tokens at 0°, 90°, 45° from BOS: cos² = 1, 0, 0.5 -> mean 0.5
    h = torch.stack([bos, torch.tensor([2.0, 0.0]), torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0])])[None, None]
    assert decorrelation_loss(h, torch.ones(1, 4)).item() == pytest.approx(0.5)
    zeros = torch.zeros(1, 1, 3, 4, dtype=torch.bfloat16, requires_grad=True)
    loss = decorrelation_loss(zeros, torch.ones(1, 3))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zeros.grad).all()


def test_lambda_zero_registers_no_hooks_and_layers_are_configurable(tiny_llm):
    model = _model(tiny_llm, weight=0.0)
    assert model.decor_layers == [] and model(BATCH).decor is None
    assert _model(tiny_llm, weight=1.0, layers=[1, 4]).decor_layers == [0, 3]
    with pytest.raises(ValueError, match="outside 1..4"):
        _model(tiny_llm, weight=1.0, layers=[5])
