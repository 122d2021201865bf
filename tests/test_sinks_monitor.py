"""The summary numbers on the planted model, and the live SinkMonitor on a fake pl_module."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from test_sinks_planted import LENGTH, PLANTED, planted  # noqa: F401 (fixture)

from avsr_sinks.sinks import sink_summary
from avsr_sinks.training.sink_monitor import SinkMonitor


def labels():
    return [["BOS"] + [f"text[{i}]" for i in range(1, LENGTH)]]


def test_summary_names_the_planted_sink(planted):  # noqa: F811
    model, ids = planted
    summary = sink_summary(model, token_labels=labels(), input_ids=ids)
    assert summary["intermediate_label"] == f"text[{PLANTED}]" and summary["intermediate_layer"] == 1
    # BOS is a sink everywhere: alpha is (mean of 1/(k+1)) at uniform layers 0, 2 and > 1/2 at layer 1.
    assert 0.2 < summary["bos_alpha"] < 1
    assert summary["max_activation_ratio"] > 1e4


class FakeModule(nn.Module):
    """Exposes what SinkMonitor needs: model.assemble, model.llm, log."""

    def __init__(self, llm):
        super().__init__()
        self.llm, self.logged = llm, {}
        self.model = SimpleNamespace(llm=llm, assemble=self.assemble)

    def assemble(self, batch):
        assert not torch.is_grad_enabled() and not self.training
        embeds = self.llm.get_input_embeddings()(batch["input_ids"])
        mask = torch.ones_like(batch["input_ids"])
        return SimpleNamespace(inputs_embeds=embeds, attention_mask=mask, position_ids=torch.arange(LENGTH)[None],
                               token_labels=labels())

    def log(self, name, value, **kwargs):
        self.logged[name] = value


def brute_force_numbers(model, ids):
    """The monitor's four numbers from HF's own outputs: eager attention weights for alpha (Eq. 5),
    and each decoder layer's output (forward hooks) for the activation ratio and the cosines."""
    outputs = []
    hooks = [layer.register_forward_hook(lambda module, args, out: outputs.append(out[0] if isinstance(out, tuple) else out))
             for layer in model.model.layers]
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attentions = model(input_ids=ids, output_attentions=True).attentions  # L x [1, H, N, N]
    finally:
        model.set_attn_implementation("sdpa")
        for hook in hooks:
            hook.remove()
    heads = attentions[0].shape[1]
    # alpha_i = sum over heads and queries k >= i of A[k, i] / (H * (N - i)): the queries that can see i.
    alpha = torch.stack([a[0].sum(dim=(0, 1)) / (heads * torch.arange(LENGTH, 0, -1)) for a in attentions])
    states = torch.stack([o[0] for o in outputs])  # [L, N, D]
    ratios = []
    for layer in states.abs():
        values = sorted(layer.flatten().tolist())
        ratios.append(values[-1] / values[(len(values) - 1) // 2])  # torch's median: the lower middle value
    cosines = [torch.dot(h[i], h[0]) / (h[i].norm() * h[0].norm()) for h in states for i in range(1, LENGTH)]
    return {"sinks/bos_alpha": alpha[:, 0].mean().item(), "sinks/intermediate_alpha": alpha[1, PLANTED].item(),
            "sinks/max_activation_ratio": max(ratios), "sinks/mean_bos_cosine": torch.stack(cosines).mean().item()}


def test_monitor_logs_every_n_steps_and_restores_train_mode(planted):  # noqa: F811
    model, ids = planted
    module = FakeModule(model).train()
    monitor = SinkMonitor(every_n_steps=2)
    empty, probe = {"ids": [], "input_ids": ids[:0]}, {"ids": ["utterance"], "input_ids": ids}
    trainer = SimpleNamespace(global_step=1, val_dataloaders=[[empty, probe]])
    monitor.on_train_batch_end(trainer, module, None, None, 0)
    assert module.logged == {}
    trainer.global_step = 2
    monitor.on_train_batch_end(trainer, module, None, None, 0)
    assert module.training and model.training
    assert monitor.probe_batch is probe  # the first batch with samples in it (an all-skipped batch is empty)
    expected = brute_force_numbers(model.eval(), ids)
    assert set(module.logged) == set(expected)
    for name, value in expected.items():
        assert module.logged[name] == pytest.approx(value, rel=1e-4), name
    assert module.logged["sinks/intermediate_alpha"] > 0.3 and module.logged["sinks/max_activation_ratio"] > 1e4
