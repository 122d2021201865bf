"""The recipes end to end on a tiny synthetic corpus: train -> eval -> analyze -> resume (DDP: test_ddp.py).

Each number checked is recomputed here from the files the run wrote (jiwer on the per-utterance
CSV, the trainable set from the rebuilt model), not read back from the code under test.
"""

import csv
import json
from pathlib import Path

import jiwer
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr_sinks.training.checkpoints import load_trained_model, read_checkpoint
from avsr_sinks.training.cli_overrides import normalize_overrides

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "data.synthetic.n_train=8", "data.synthetic.n_val=4", "data.synthetic.n_test=4", "data.synthetic.max_words=2",
    "data.num_workers=0", "data.max_frames=200", "data.eval_max_frames=200",
    "model.video_encoder.config.layers=1", "model.video_encoder.config.dim=16", "model.video_encoder.config.heads=2",
    "model.video_encoder.config.ffn_dim=32", "model.video_encoder.config.resnet_widths=[2,2,4,4]",
    "model.audio_encoder.config.d_model=16", "model.audio_encoder.config.encoder_layers=1",
    "model.audio_encoder.config.encoder_attention_heads=2", "model.audio_encoder.config.encoder_ffn_dim=32",
    "model.llm.tiny.hidden_size=16", "model.llm.tiny.num_layers=3", "model.llm.tiny.intermediate_size=32",
    "model.llm.tiny.num_heads=2", "model.llm.tiny.num_kv_heads=1",
    "generation.num_beams=2", "generation.max_new_tokens=4", "optim.warmup_steps=1",
    "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "logger.wandb.enabled=false",
]


def _compose(config_name, overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name=config_name, overrides=normalize_overrides(overrides)), resolve=True)


def _train_cfg(tmp_path, out, *extra):
    cfg = _compose("train", [*TINY, f"data.cache_dir={tmp_path / 'cache'}", f"output_dir={out}", *extra])
    return cfg


def _wer_from_csv(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return jiwer.wer([r["reference"] for r in rows], [r["hypothesis"] or "" for r in rows]), len(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from avsr_sinks.training.pipeline import train

    tmp = tmp_path_factory.mktemp("e2e")
    out = tmp / "run"
    result = train(_train_cfg(tmp, out, "trainer.max_epochs=1", "decor.lambda=10"))
    return tmp, out, result


def test_training_writes_checkpoints_logs_and_a_test_wer_that_matches_its_csv(trained):
    _, out, result = trained
    assert (out / "checkpoints" / "last.ckpt").is_file()
    summary = json.loads((out / "eval" / "test_wer.json").read_text())
    wer, utterances = _wer_from_csv(out / "eval" / "test_utterances.csv")
    assert utterances == 4
    assert summary["wer"] == pytest.approx(wer)
    metrics = list(csv.DictReader(open(out / "csv" / "version_0" / "metrics.csv")))
    assert any(row.get("train/decor") for row in metrics), "decor.lambda>0 must log the decorrelation term"


def test_checkpoint_holds_exactly_the_trainable_parameters_and_loads_safely(trained):
    _, out, _ = trained
    path = out / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(path)  # weights_only=True: a pickle with code would raise
    model, _ = load_trained_model(path)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    saved = {key.removeprefix("model.") for key in checkpoint["state_dict"]}
    assert trainable <= saved
    frozen_llm = {name for name, p in model.named_parameters() if not p.requires_grad and ".llm." in f".{name}"}
    assert not (saved & frozen_llm), "the frozen LLM base must not be written into every checkpoint"
    # The video encoder trains from scratch here: its BatchNorm statistics moved away from the
    # initial (0, 1) and must come back from the checkpoint, or eval-mode features are wrong.
    stats = [k for k in saved if k.endswith("running_var") and "encoders.video" in k]
    assert stats
    for key in stats:
        loaded = model.state_dict()[key]
        assert torch.equal(loaded, checkpoint["state_dict"][f"model.{key}"])
        assert not torch.allclose(loaded, torch.ones_like(loaded))


def test_last_checkpoint_is_the_state_training_ended_in_when_it_stops_between_validations(tmp_path, monkeypatch):
    # Validation every 2 steps, stopped at step 3 in the middle of the first epoch (as laptop_asr
    # stops at 4200 of ~5000): Lightning left last.ckpt at the first validation's state.
    from avsr_sinks.training import pipeline

    ended = {}

    class KeepFinalState(L.Callback):
        def on_train_end(self, trainer, pl_module):
            ended.update(step=trainer.global_step, epoch_steps=trainer.num_training_batches,
                         state={k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    callbacks = pipeline._callbacks
    monkeypatch.setattr(pipeline, "_callbacks", lambda cfg, output_dir: [*callbacks(cfg, output_dir), KeepFinalState()])
    out = tmp_path / "run"
    pipeline.train(_train_cfg(tmp_path, out, "data.max_frames=40", "trainer.max_steps=3", "+trainer.val_check_interval=2",
                              "trainer.check_val_every_n_epoch=null", "run_test=false"))
    assert ended["step"] == 3 and ended["epoch_steps"] > 3, "the run must stop inside its first epoch"
    last = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 3
    assert all(torch.equal(value, ended["state"][key]) for key, value in last["state_dict"].items())
    epoch = read_checkpoint(out / "checkpoints" / "epoch000.ckpt")
    assert epoch["global_step"] == 2  # the newest validation's state
    assert any(not torch.equal(value, epoch["state_dict"][key]) for key, value in last["state_dict"].items())
    # Evaluation and analysis say which step's state they measured.
    from avsr_sinks.training.analyze import analyze_checkpoint
    from avsr_sinks.training.evaluate import evaluate_checkpoint

    ckpt = out / "checkpoints" / "last.ckpt"
    table = evaluate_checkpoint(_compose("eval", [f"ckpt={ckpt}", "generation.num_beams=1", "generation.max_new_tokens=2",
                                                  f"output_dir={tmp_path / 'eval'}"]))
    analysis = analyze_checkpoint(_compose("analyze", [f"ckpt={ckpt}", "num_samples=1", f"output_dir={tmp_path / 'analyze'}"]))
    assert table["checkpoint_step"] == analysis["checkpoint_step"] == 3


def test_eval_over_noise_levels_and_analyze(trained):
    from avsr_sinks.training.analyze import analyze_checkpoint
    from avsr_sinks.training.evaluate import evaluate_checkpoint

    tmp, out, _ = trained
    ckpt = out / "checkpoints" / "last.ckpt"
    eval_cfg = _compose("eval", [f"ckpt={ckpt}", "eval.snr=[0,clean]", "generation.num_beams=2",
                                 "generation.max_new_tokens=4", f"output_dir={tmp / 'eval'}"])
    table = evaluate_checkpoint(eval_cfg)
    assert [row["snr"] for row in table["rows"]] == [0.0, "clean"]
    for row, tag in zip(table["rows"], ("test_snr0", "test_clean")):
        wer, _ = _wer_from_csv(tmp / "eval" / f"{tag}_utterances.csv")
        assert row["wer"] == pytest.approx(wer)
    # The reloaded checkpoint decodes the clean test set as the trained model did at the end of training.
    hypotheses = [{r["id"]: r["hypothesis"] for r in csv.DictReader(open(path))}
                  for path in (out / "eval" / "test_utterances.csv", tmp / "eval" / "test_clean_utterances.csv")]
    assert hypotheses[0] == hypotheses[1]

    analyze_cfg = _compose("analyze", [f"ckpt={ckpt}", "num_samples=2", f"output_dir={tmp / 'analyze'}"])
    result = analyze_checkpoint(analyze_cfg)
    assert result["utterances"] == 2
    reports = [p for p in (tmp / "analyze").iterdir() if p.is_dir()]
    assert len(reports) == 2
    for report in reports:
        assert (report / "alpha_heatmap.png").stat().st_size > 0
        per_layer = list(csv.reader(open(report / "alpha.csv")))
        assert len(per_layer) == 1 + 3  # header + one row per decoder layer of the tiny LLM
    mean_bos = sum(u["bos_alpha"] for u in result["per_utterance"].values()) / 2
    assert result["mean"]["bos_alpha"] == pytest.approx(mean_bos)


def test_resume_continues_from_the_saved_step(trained):
    from avsr_sinks.training.pipeline import train

    tmp, out, _ = trained
    first = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    resumed_out = tmp / "resumed"
    train(_train_cfg(tmp, resumed_out, "trainer.max_epochs=2", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
                     "run_test=false"))
    second = torch.load(resumed_out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["epoch"] == 0 and second["epoch"] == 1
    assert second["global_step"] == 2 * first["global_step"]  # same batches per epoch, one more epoch


def test_sink_logit_run_trains_its_logits_and_compare_tabulates_every_method(trained, monkeypatch):
    from avsr_sinks.training import compare as compare_module
    from avsr_sinks.training.act_search import search_act_heads
    from avsr_sinks.training.compare import compare_methods
    from avsr_sinks.training.datamodule import AVSRDataModule, resolve_corpus
    from avsr_sinks.training.pipeline import train

    tmp, out, _ = trained
    sink_out = tmp / "sink_logit"
    train(_train_cfg(tmp, sink_out, "trainer.max_epochs=1", "experiment=demo_sink_logit", "run_test=false"))
    sink_ckpt = sink_out / "checkpoints" / "last.ckpt"
    logits = {k: v for k, v in read_checkpoint(sink_ckpt)["state_dict"].items() if "sink_logit" in k}
    assert len(logits) == 3  # one per decoder layer of the tiny LLM
    assert all(not torch.allclose(v, torch.full_like(v, -8.0)) for v in logits.values()), "sink logits must train"

    base_ckpt = out / "checkpoints" / "last.ckpt"
    search = _compose("search_act_heads", [f"ckpt={base_ckpt}", "budget=2", "layers=[1]", "generation.num_beams=1",
                                           "generation.max_new_tokens=4", f"output_dir={tmp / 'act'}"])
    result = search_act_heads(search)
    assert len(result.trials) == 2 and result.trials[0][0] == []
    heads_file = json.loads((tmp / "act" / "act_heads.json").read_text())
    assert [tuple(h) for h in heads_file["heads"]] == result.heads

    compare = _compose("compare", [f"runs.base={base_ckpt}", f"runs.sink_logit={sink_ckpt}",
                                   f"act.heads_file={tmp / 'act' / 'act_heads.json'}", "num_samples=1", "train_steps=2",
                                   "generation.num_beams=1", "generation.max_new_tokens=4", f"output_dir={tmp / 'compare'}"])
    timed_ids = []
    measure_step = compare_module._train_step_ms
    monkeypatch.setattr(compare_module, "_train_step_ms",
                        lambda model, batches, *rest: timed_ids.append([b["ids"] for b in batches]) or measure_step(model, batches, *rest))
    rows = compare_methods(compare)
    # Steps are timed on the batches training starts with (training batch size, the run's shuffle), not eval batches.
    run_cfg = read_checkpoint(base_ckpt)["hyper_parameters"]["config"]
    training_loader = AVSRDataModule(run_cfg["data"], resolve_corpus(run_cfg["data"]), ("audio", "video"),
                                     seed=run_cfg["seed"]).train_dataloader()
    assert timed_ids[0] == [batch["ids"] for _, batch in zip(range(2), training_loader)]
    assert [r["method"] for r in rows] == ["base", "act", "sink_logit"]
    base_wer, _ = _wer_from_csv(tmp / "compare" / "base" / "test_utterances.csv")
    assert rows[0]["wer_delta"] is None
    for row in rows:
        wer, _ = _wer_from_csv(tmp / "compare" / row["method"] / "test_utterances.csv")
        assert row["wer"] == pytest.approx(wer)
        assert row["train_step_ms"] > 0 and row["decode_ms_per_utterance"] > 0
        if row["method"] != "base":
            assert row["wer_delta"] == pytest.approx(wer - base_wer)
            assert row["wer_delta_low"] <= row["wer_delta_high"]
    # Each row names the step its checkpoint holds: the base run's, from its own training log.
    logged = list(csv.DictReader(open(out / "csv" / "version_0" / "metrics.csv")))
    assert rows[0]["checkpoint_step"] == 1 + max(int(r["step"]) for r in logged if r.get("train/loss"))
    table = (tmp / "compare" / "comparison.md").read_text().splitlines()
    assert len(table) == 2 + 3
