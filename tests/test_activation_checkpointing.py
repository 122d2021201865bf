"""Activation checkpointing of the LLM's decoder layers: the same loss and gradients as without it,
with the decorrelation loss, LoRA dropout and each fine-tuning baseline; layer hooks fire once."""

import pytest
import torch

from avsr_sinks.sinks.hooks import decoder_layers
from avsr_sinks.training.datamodule import AVSRDataModule
from test_precision import _model


def _loss_and_gradients(model, batch):
    """Loss and trainable gradients of one training step; counts of the decoder layers' forward
    hooks and of their attention modules' calls (the latter run again when a layer is recomputed)."""
    layer_outputs, attention_calls = [0], [0]
    handles = [layer.register_forward_hook(lambda *_: layer_outputs.__setitem__(0, layer_outputs[0] + 1))
               for layer in decoder_layers(model.llm)]
    handles += [layer.self_attn.register_forward_pre_hook(lambda *_: attention_calls.__setitem__(0, attention_calls[0] + 1))
                for layer in decoder_layers(model.llm)]
    torch.manual_seed(0)  # the same LoRA dropout masks in both models
    model.train()
    loss = model(batch).loss
    loss.backward()
    for handle in handles:
        handle.remove()
    gradients = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), gradients, layer_outputs[0], attention_calls[0]


@pytest.mark.parametrize("baseline", ["none", "sink_logit", "gated_attention"])
def test_checkpointed_layers_give_the_same_loss_and_lora_gradients(tmp_path, baseline):
    settings = [f"baseline.kind={baseline}", "decor.lambda=10", "model.llm.lora.dropout=0.1"]
    plain, cfg, corpus = _model(tmp_path, *settings)
    checkpointed, _, _ = _model(tmp_path, *settings, "model.llm.activation_checkpointing=true")
    torch.manual_seed(1)
    for name, parameter in plain.named_parameters():
        if "lora_B" in name:  # off its zero init, so that lora_A gets a gradient too
            parameter.data.normal_(0.0, 0.05)
    trained = plain.trained_state_keys()
    checkpointed.load_state_dict({k: v for k, v in plain.state_dict().items() if k in trained}, strict=False)
    batch = next(iter(AVSRDataModule(cfg["data"], corpus, ("audio", "video"), seed=0).train_dataloader()))

    loss, gradients, outputs, attention = _loss_and_gradients(plain, batch)
    loss_ac, gradients_ac, outputs_ac, attention_ac = _loss_and_gradients(checkpointed, batch)
    layers = len(decoder_layers(plain.llm))
    assert (outputs, attention) == (layers, layers)
    assert outputs_ac == layers and attention_ac == 2 * layers  # recomputed in backward; layer hooks saw each output once
    assert plain.decor_layers and torch.equal(loss, loss_ac)
    lora = [n for n in gradients if "lora_" in n]
    assert lora and all(gradients[n].abs().sum() > 0 for n in lora)
    assert gradients.keys() == gradients_ac.keys()
    # The replay runs the same kernels on the same inputs: bit-identical gradients (None for the
    # video-only AV-HuBERT's unused audio projection, in both).
    assert [n for n, g in gradients.items() if (g is None) != (gradients_ac[n] is None)] == []
    assert [n for n, g in gradients.items() if g is not None and not torch.equal(gradients_ac[n], g)] == []
