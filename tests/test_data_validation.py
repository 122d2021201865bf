"""Planted faults: validate_manifest and scripts/validate_data.py report them, the dataset skips them
with the reason, a batch they empty is skipped whole, and too many of them stop the run."""

import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avsr_sinks.data import (AVSRDataset, BadSampleError, LabelRow, TooManyBadSamplesError, collate_samples,
                             write_label_csv)
from avsr_sinks.data.media import write_audio, write_video
from avsr_sinks.data.validation import validate_manifest
from avsr_sinks.model.tasks import sample_limits

REPO = Path(__file__).resolve().parents[1]
# Compression 8 (audio, 50 Hz Whisper frames) and 3 (video, 25 Hz): one window is 4 video frames for
# audio (8 / 2) and 3 for video, so 4. Positions of a 5-frame clip: BOS 1 + audio <a> ceil(10/8)=2 </a>
# + video <v> ceil(5/3)=2 </v> + prompt 3 + transcript + EOS 1 = 13 + transcript words, with one
# token a word; the 40-frame clip: 1 + (2 + 10) + (2 + 14) + 3 + 1 + 1 = 34. At most 40 positions.
LIMITS = sample_limits({"audio": 8, "video": 3}, prompt_tokens=3, count_tokens=lambda text: len(text.split()),
                       max_positions=40)
WORDY = " ".join(["word"] * 50)  # 13 + 50 = 63 positions


def clip(root, name, n_frames, audio_frames=None, transcript="t"):
    stem = root / "lrs2" / name
    write_video(stem.with_suffix(".mp4"), np.full((n_frames, 96, 96), 90, dtype=np.uint8))
    write_audio(stem.with_suffix(".wav"), np.full(640 * (audio_frames or n_frames), 0.1))
    return LabelRow("lrs2", name, n_frames, "1", transcript)


@pytest.fixture
def corpus(tmp_path):
    rows = [clip(tmp_path, "good", 5), clip(tmp_path, "long", 40), LabelRow("lrs2", "gone", 5, "1", "t"),
            clip(tmp_path, "empty", 5), clip(tmp_path, "corrupt", 5), clip(tmp_path, "mismatch", 5, audio_frames=15),
            clip(tmp_path, "blank", 5, transcript="  \t "), clip(tmp_path, "short", 3), clip(tmp_path, "wordy", 5, transcript=WORDY)]
    (tmp_path / "lrs2" / "empty.wav").write_bytes(b"")
    (tmp_path / "lrs2" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(200)))
    write_label_csv(tmp_path / "l.csv", rows)
    return tmp_path


LABEL_FAULTS = {"empty_transcript": ["lrs2/blank"], "too_short": ["lrs2/short"], "too_long_for_model": ["lrs2/wordy"]}


@pytest.mark.parametrize("workers", [0, 2])
def test_validate_manifest_reports_each_kind(corpus, workers):
    report = validate_manifest(corpus, corpus / "l.csv", max_frames=30, workers=workers, progress=False, limits=LIMITS)
    found = {kind: sorted(sample_id for sample_id, _, _ in items) for kind, items in report.problems.items()}
    assert found == {"missing": ["lrs2/gone", "lrs2/gone"], "unreadable": ["lrs2/corrupt"], "empty": ["lrs2/empty"],
                     "too_long": ["lrs2/long"], "mismatched": ["lrs2/mismatch"], **LABEL_FAULTS}
    assert report.n_samples == 9 and report.n_bad == 8
    paths = [path for _, path, _ in report.problems["missing"]]
    assert sorted(Path(p).suffix for p in paths) == [".mp4", ".wav"]
    assert "mismatched: 1" in report.summary() and "63 LLM positions, more than the LLM's 40" in report.summary()


def test_empty_transcripts_are_reported_without_any_model_setting(corpus):
    report = validate_manifest(corpus, corpus / "l.csv", workers=0, progress=False)
    assert [sample_id for sample_id, _, _ in report.problems["empty_transcript"]] == ["lrs2/blank"]
    assert report.problems["too_short"] == report.problems["too_long_for_model"] == []


def test_dataset_skips_what_the_model_cannot_take_with_the_reason(corpus):
    with pytest.warns(UserWarning, match="skipping 3 of 9 train samples the model cannot take"):
        dataset = AVSRDataset(corpus, corpus / "l.csv", limits=LIMITS, max_bad_fraction=1.0)
    reasons = dict(dataset.skipped)
    assert {sample_id: reason.split()[0] for sample_id, reason in reasons.items()} == {
        "lrs2/blank": "empty_transcript", "lrs2/short": "too_short", "lrs2/wordy": "too_long_for_model"}
    assert "3 frames; one compression window takes 4" in reasons["lrs2/short"]
    assert [row.utterance_id for row in dataset.rows] == ["lrs2/good", "lrs2/long", "lrs2/gone", "lrs2/empty",
                                                          "lrs2/corrupt", "lrs2/mismatch"]
    with pytest.raises(BadSampleError, match="empty_transcript"):
        AVSRDataset(corpus, corpus / "l.csv", limits=LIMITS, strict=True)
    # 3 of 9 are bad at construction already: more than a third stops, with the list.
    with pytest.warns(UserWarning), pytest.raises(TooManyBadSamplesError, match=r"(?s)3 of 9 train samples.*lrs2/wordy"):
        AVSRDataset(corpus, corpus / "l.csv", limits=LIMITS, max_bad_fraction=0.3)


def _batches(dataset, groups):
    """Batches of the given utterance ids, collated as the loaders do."""
    index = {row.utterance_id: i for i, row in enumerate(dataset.rows)}
    with pytest.warns(UserWarning, match="skipping bad sample"):
        return [collate_samples([dataset[index[i]] for i in group]) for group in groups]


@pytest.fixture
def avsr_module(tiny_llm):
    """AVSRModule over a tiny LlamaAVSR (stand-in encoders), on a trainer whose ranks are simulated."""
    from conftest import FrameEncoder

    from avsr_sinks.model.avsr import GenerationSettings, LlamaAVSR
    from avsr_sinks.training.module import AVSRModule, OptimSettings

    llm, tokenizer, special = tiny_llm
    model = LlamaAVSR(llm, tokenizer, special, "avsr", [2, 1], audio_encoder=FrameEncoder("audio", 640),
                      video_encoder=FrameEncoder("video", 1))
    module = AVSRModule(model, OptimSettings(), GenerationSettings(num_beams=1, max_new_tokens=2))
    module.log = lambda *args, **kwargs: None  # no Lightning loop here to record the losses
    return module


def _optimizer_steps(module, other_rank_trained: bool) -> int:
    """Run the module's optimizer step once, the other rank having had samples when
    ``other_rank_trained``; returns how many times the optimizer stepped (0 or 1)."""
    steps = []
    module.trainer = SimpleNamespace(global_step=0, world_size=1, strategy=SimpleNamespace(reduce_boolean_decision=lambda own, all: own or other_rank_trained))
    module.optimizer_step(0, 0, SimpleNamespace(step=lambda closure: steps.append(closure())), lambda: torch.tensor(0.0))
    return len(steps)


def test_a_batch_of_only_bad_samples_is_skipped_whole_on_every_rank(corpus, avsr_module):
    from avsr_sinks.evaluation.runner import transcribe

    with pytest.warns(UserWarning, match="skipping 1 of 9"):  # the blank transcript
        dataset = AVSRDataset(corpus, corpus / "l.csv", augment=False)
    all_bad, good = _batches(dataset, [["lrs2/gone", "lrs2/corrupt", "lrs2/empty"], ["lrs2/good"]])
    assert all_bad == {"ids": [], "text": []}  # no modality keys: LlamaAVSR.encode would raise KeyError
    assert sorted(sample_id for sample_id, _ in dataset.skipped) == ["lrs2/blank", "lrs2/corrupt", "lrs2/empty", "lrs2/gone"]
    # This rank's batch is empty: a zero loss whose backward reaches every trainable parameter with
    # zeros, so that DDP's gradient all-reduce is joined by every rank.
    loss = avsr_module.training_step(all_bad, 0)
    loss.backward()
    trainable = [p for p in avsr_module.parameters() if p.requires_grad]
    assert loss.item() == 0 and all(p.grad is not None and not p.grad.any() for p in trainable)
    assert _optimizer_steps(avsr_module, other_rank_trained=False) == 0  # no rank had a sample: no step
    avsr_module.training_step(all_bad, 1)
    assert _optimizer_steps(avsr_module, other_rank_trained=True) == 1  # another rank's batch trains
    real = avsr_module.training_step(good, 2)
    assert real.item() > 0 and _optimizer_steps(avsr_module, other_rank_trained=False) == 1
    assert avsr_module.validation_step(all_bad, 0) is None
    ids, refs, hyps = transcribe(avsr_module.model, [all_bad, good], avsr_module.generation)
    assert ids == ["lrs2/good"] and refs == ["t"] and len(hyps) == 1


def test_the_run_stops_once_the_bad_share_passes_max_bad_fraction(corpus):
    """The datamodule's check after each batch; under DDP a rank sees its share of the media faults."""
    from avsr_sinks.training.datamodule import AVSRDataModule

    data = {"max_bad_fraction": 0.4, "strict": False, "augment": False, "max_frames": 100, "num_workers": 0}
    module = AVSRDataModule(data, {"root": corpus, "train_csv": corpus / "l.csv"}, ("audio", "video"), seed=0)
    with pytest.warns(UserWarning, match="skipping 1 of 9"):  # the blank transcript: the one bad row before any media is read
        dataset = module.train_dataloader().dataset
    decisions = []
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all: decisions.append(decision) or decision)
    module.trainer = SimpleNamespace(world_size=1, strategy=strategy)
    _batches(dataset, [["lrs2/gone", "lrs2/corrupt"]])
    module.on_after_batch_transfer({}, 0)  # 3 of 9 bad: not more than 0.4 of them (3.6)
    _batches(dataset, [["lrs2/empty"]])
    with pytest.raises(TooManyBadSamplesError, match=r"(?s)4 of 9 train samples are bad.*lrs2/corrupt"):
        module.on_after_batch_transfer({}, 0)
    assert decisions == [False, True]
    two_ranks = AVSRDataModule(data, {"root": corpus, "train_csv": corpus / "l.csv"}, ("audio", "video"), seed=0)
    with pytest.warns(UserWarning, match="skipping 1 of 9"):
        _batches(two_ranks.train_dataloader().dataset, [["lrs2/gone", "lrs2/corrupt"]])
    two_ranks.trainer = SimpleNamespace(world_size=2, strategy=strategy)
    with pytest.raises(TooManyBadSamplesError, match="5 of 9"):  # the blank row + this rank's 2 media faults twice
        two_ranks.on_after_batch_transfer({}, 0)


def _cli(corpus, label_csv, *extra):
    return [str(REPO / "scripts/validate_data.py"), "data=lrs2", f"data.root={corpus}", f"data.train_csv={label_csv}",
            "splits=[train]", "workers=0", f"hydra.run.dir={corpus / 'hydra'}", *extra]


def test_cli_exit_status(corpus, monkeypatch, capsys):
    run = subprocess.run([sys.executable, *_cli(corpus, corpus / "l.csv", "max_frames=30", "compression=[8,3]")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "9 samples checked" in run.stdout and "corrupt.mp4" in run.stdout
    assert "empty_transcript: 1" in run.stdout and "too_short: 1" in run.stdout
    assert "too_long_for_model: 0" in run.stdout  # without llm= the LLM's positions are not known
    missing = subprocess.run([sys.executable, *_cli(corpus, corpus / "l.csv", "splits=[train,val]")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("config error: data.val_csv=???: is not set")
    write_label_csv(corpus / "ok.csv", [LabelRow("lrs2", "good", 5, "1", "t")])
    monkeypatch.setattr(sys, "argv", _cli(corpus, corpus / "ok.csv"))
    with pytest.raises(SystemExit) as exit_status:  # in-process: one interpreter start is enough
        runpy.run_path(str(REPO / "scripts/validate_data.py"), run_name="__main__")
    assert exit_status.value.code == 0 and "0 bad" in capsys.readouterr().out


def test_two_ddp_ranks_stay_in_step_when_one_gets_a_batch_of_only_bad_samples(tmp_path):
    """The failure the skip is for: train.py with two DDP processes on a corpus where rank 0's first
    batch has lost its videos (rank 1's is fine) and both ranks' second batches have. The run must
    finish (a rank that skipped its backward would leave the other waiting in the gradient
    all-reduce); rank 0 logs a loss for its batches with samples, and the optimizer steps whenever
    a rank had one (not on the second step), both worked out here from the batch plan."""
    import csv
    import os

    from test_end_to_end import ROOT, TINY, _compose

    from avsr_sinks.data import FrameBudgetBatchSampler, read_label_csv
    from avsr_sinks.training.datamodule import resolve_corpus

    settings = [*TINY, f"data.cache_dir={tmp_path / 'cache'}", "data.max_frames=40", "data.max_bad_fraction=1.0"]
    cfg = _compose("train", [*settings, f"output_dir={tmp_path}"])
    corpus = resolve_corpus(cfg["data"])  # generated here once; the run reuses it
    rows = read_label_csv(corpus["train_csv"], root=corpus["root"])
    plan = [list(FrameBudgetBatchSampler([r.n_frames for r in rows], 40, shuffle=True, seed=cfg["seed"], num_replicas=2,
                                         rank=rank)) for rank in (0, 1)]
    steps = list(zip(*plan))
    assert len(steps) >= 3
    bad = set(steps[0][0]) | set(steps[1][0]) | set(steps[1][1])  # step 0: rank 0's batch; step 1: both ranks'
    assert not bad & set(steps[0][1])
    for index in bad:
        rows[index].media_path(corpus["root"], ".mp4").unlink()
    logged = [step for step in steps if set(step[0]) - bad]  # rank 0 logs its own batch's loss
    stepped = [step for step in steps if any(set(batch) - bad for batch in step)]

    run = tmp_path / "ddp"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *settings, f"hydra.run.dir={run}",
                           "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                           "run_test=false"], capture_output=True, text=True, timeout=400, cwd=tmp_path,
                          env={**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(run / "csv" / "version_0" / "metrics.csv") as handle:
        losses = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(losses) == len(logged) < len(steps)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    adam_steps = {float(state["step"]) for state in checkpoint["optimizer_states"][0]["state"].values()}
    assert adam_steps == {len(stepped)} and len(stepped) == len(steps) - 1  # AdamW's own count of its updates
