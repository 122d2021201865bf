"""The summary numbers on the planted model, and the live SinkMonitor on a fake pl_module."""

from types import SimpleNamespace

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

    def __init__(self, llm, ids):
        super().__init__()
        self.llm, self.ids, self.logged = llm, ids, {}
        self.model = SimpleNamespace(llm=llm, assemble=self.assemble)

    def assemble(self, batch):
        assert not torch.is_grad_enabled() and not self.training
        embeds = self.llm.get_input_embeddings()(batch["ids"])
        mask = torch.ones_like(batch["ids"])
        return SimpleNamespace(inputs_embeds=embeds, attention_mask=mask, position_ids=torch.arange(LENGTH)[None],
                               token_labels=labels())

    def log(self, name, value, **kwargs):
        self.logged[name] = value


def test_monitor_logs_every_n_steps_and_restores_train_mode(planted):  # noqa: F811
    model, ids = planted
    module = FakeModule(model, ids).train()
    monitor = SinkMonitor(every_n_steps=2)
    trainer = SimpleNamespace(global_step=1, val_dataloaders=[[{"ids": ids}]])
    monitor.on_train_batch_end(trainer, module, None, None, 0)
    assert module.logged == {}
    trainer.global_step = 2
    monitor.on_train_batch_end(trainer, module, None, None, 0)
    assert module.training and model.training
    expected = sink_summary(model.eval(), input_ids=ids)
    assert module.logged["sinks/bos_alpha"] == expected["bos_alpha"]
    assert module.logged["sinks/intermediate_alpha"] == expected["intermediate_alpha"] > 0.3
    assert set(module.logged) == {"sinks/bos_alpha", "sinks/intermediate_alpha", "sinks/max_activation_ratio",
                                  "sinks/mean_bos_cosine"}
