"""The toolkit on real Llama-AVSR batches: ragged right padding, left-padded generation prefix."""

from types import SimpleNamespace

import torch
from test_sequence_layout import _batch, _model

from avsr_sinks.sinks import attention_sink_scores, sink_report
from avsr_sinks.training.sink_monitor import SinkMonitor


def _alpha(llm, inputs, rows=slice(None), length=None):
    return attention_sink_scores(llm, attention_mask=inputs.attention_mask[rows, :length],
                                 inputs_embeds=inputs.inputs_embeds[rows, :length],
                                 position_ids=inputs.position_ids[rows, :length])


def test_padding_does_not_change_a_sample_scores(tiny_llm):
    model = _model(tiny_llm, "avsr", [4, 2]).eval()
    with torch.no_grad():
        for generation in (False, True):
            inputs = model.assemble(_batch(), for_generation=generation)
            alpha = _alpha(model.llm, inputs)
            valid = inputs.attention_mask[1].bool()
            alone = attention_sink_scores(model.llm, inputs_embeds=inputs.inputs_embeds[1:2, valid],
                                          position_ids=inputs.position_ids[1:2, valid])
            torch.testing.assert_close(alpha[:, 1, valid], alone[:, 0], atol=1e-5, rtol=0)
            assert alpha[:, 1, ~valid].abs().max() == 0


def test_report_and_monitor_on_avsr_batch(tiny_llm, tmp_path):
    model = _model(tiny_llm, "avsr", [4, 2]).eval()
    with torch.no_grad():
        inputs = model.assemble(_batch())
    summary = sink_report(model.llm, inputs.token_labels, tmp_path, sample=1, attention_mask=inputs.attention_mask,
                          inputs_embeds=inputs.inputs_embeds, position_ids=inputs.position_ids)
    assert (tmp_path / "alpha_heatmap.png").exists()
    assert summary["intermediate_label"] in (None, *inputs.token_labels[1])
    holder = torch.nn.Module()
    holder.model, logged = model, {}
    holder.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    holder.train()
    SinkMonitor(every_n_steps=1).on_train_batch_end(SimpleNamespace(global_step=1, val_dataloaders=[[_batch()]]),
                                                    holder, None, None, 0)
    assert holder.training and model.training and len(logged) == 4
