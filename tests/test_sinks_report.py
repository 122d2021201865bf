"""The report writes every file; the series tells the planted model from a plain one."""

import csv
import json

import torch
from test_sinks_planted import LENGTH, PLANTED, planted  # noqa: F401 (fixture)
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks import checkpoint_series, sink_report

LABELS = [["BOS"] + [f"text[{i}]" for i in range(1, LENGTH)]]


def test_report_writes_numbers_and_figures(planted, tmp_path):  # noqa: F811
    model, ids = planted
    summary = sink_report(model, LABELS, tmp_path, input_ids=ids)
    assert summary["intermediate_label"] == f"text[{PLANTED}]"
    for name in ("alpha_heatmap", "activations", "alpha_per_layer", "contributions", "bos_cosine",
                 "pairwise_cosine", "rotation"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text())["intermediate_position"] == PLANTED
    rows = list(csv.reader(open(tmp_path / "alpha.csv")))
    assert rows[0][1:] == LABELS[0] and len(rows) == 4
    rotation = json.loads((tmp_path / "rotation.json").read_text())
    assert rotation["layer"] == 0 and rotation["after"]["massive_features"][1] == []


def test_series_tabulates_when_the_sink_appears(planted, tmp_path):  # noqa: F811
    model, ids = planted
    torch.manual_seed(0)
    plain = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=8, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=1)).eval()
    for parameter in plain.model.layers.parameters():
        parameter.data.zero_()  # uniform attention: no intermediate sink
    rows = checkpoint_series([("epoch0", plain, {"input_ids": ids}), ("epoch1", model, {"input_ids": ids})], LABELS)
    assert [row["intermediate_sinks"] for row in rows] == [[], [f"text[{PLANTED}]"]]
    assert [row["layers_with_intermediate"] for row in rows] == [0, 1]
