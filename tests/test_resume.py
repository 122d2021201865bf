"""Step checkpoints and exact resume: the sampler's position, per-sample random draws, atomic
checkpoint files, choosing the checkpoint to resume, and a run killed with SIGKILL and resumed.

The resumed run is checked against an uninterrupted run of the same config: every number compared
comes from the two runs' own logs and checkpoints.
"""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import yaml

from avsr_sinks.data import AVSRDataset, FrameBudgetBatchSampler, TrainNoiseConfig, collate_samples, write_label_csv
from avsr_sinks.data.batching import ResumableDataLoader
from avsr_sinks.training.cli_overrides import expand_resume
from avsr_sinks.training.resume import AtomicCheckpointIO, newest_resumable_checkpoint, resolve_resume_checkpoint
from test_data_pipeline import make_clip
from test_end_to_end import ROOT, TINY

LENGTHS = np.random.default_rng(4).integers(5, 60, 41).tolist()


def _loader(rank, replicas, epoch):
    sampler = FrameBudgetBatchSampler(LENGTHS, 120, seed=9, num_replicas=replicas, rank=rank)
    sampler.set_epoch(epoch)
    return ResumableDataLoader(list(range(len(LENGTHS))), batch_sampler=sampler, collate_fn=list)


@pytest.mark.parametrize("replicas", [1, 2])
def test_each_rank_resumes_its_own_shard_at_the_next_batch(replicas):
    for rank in range(replicas):
        uninterrupted = list(_loader(rank, replicas, epoch=1))
        assert uninterrupted != list(_loader(rank, replicas, epoch=0))  # another epoch, another order
        interrupted = _loader(rank, replicas, epoch=1)
        delivered = [batch for _, batch in zip(range(3), interrupted)]
        position = interrupted.position()
        resumed = _loader(rank, replicas, epoch=0)  # a fresh process: the epoch comes from the position
        resumed.resume(position)
        resumed.batch_sampler.set_epoch(1)  # Lightning sets the epoch again after loading the state
        assert delivered + list(resumed) == uninterrupted
        assert list(resumed) == uninterrupted  # once the resumed epoch is done, it iterates from its start


def test_a_position_at_the_end_of_an_epoch_starts_the_next_and_a_other_world_size_is_refused():
    finished = _loader(0, 1, epoch=2)
    list(finished)
    resumed = _loader(0, 1, epoch=0)
    resumed.resume(finished.position())
    assert resumed.batch_sampler.epoch == 3 and list(resumed) == list(_loader(0, 1, epoch=3))
    with pytest.raises(ValueError, match="num_replicas=1, this run 2"):
        _loader(0, 2, epoch=0).resume(finished.position())


def test_training_draws_follow_seed_epoch_and_index_in_any_process(tmp_path):
    write_label_csv(tmp_path / "l.csv", [make_clip(tmp_path, f"c{i}", 30, value=60 + 20 * i, size=100) for i in range(4)])
    dataset = AVSRDataset(tmp_path, tmp_path / "l.csv", split="train", seed=5,
                          train_noise=TrainNoiseConfig(snr_db=(0.0, 10.0, None), kind="white"))

    def epoch_samples(epoch, workers):
        sampler = FrameBudgetBatchSampler(dataset.lengths, 60, seed=5, epoch_in_keys=True)
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_samples,
                                             num_workers=workers)
        torch.manual_seed(epoch + 100 * workers)  # whatever the global generator holds
        return {i: (b["audio"][k], b["video"][k]) for b in loader for k, i in enumerate(b["ids"])}

    in_process, in_worker, next_epoch = epoch_samples(1, 0), epoch_samples(1, 1), epoch_samples(2, 0)
    assert sorted(in_process) == sorted(next_epoch) == [f"lrs3/c{i}" for i in range(4)]
    for utterance, (audio, video) in in_process.items():
        assert torch.equal(audio, in_worker[utterance][0]) and torch.equal(video, in_worker[utterance][1])
    assert any(not torch.equal(in_process[u][1], next_epoch[u][1]) for u in in_process)  # new crops and masks per epoch


KILL_WHILE_WRITING = """
import io, os, signal, sys, torch
from avsr_sinks.training.resume import AtomicCheckpointIO
real_save = torch.save
def save_half_then_die(obj, handle):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save_half_then_die
AtomicCheckpointIO().save_checkpoint({"loops": {}, "weights": torch.full((50_000,), 2.0)}, sys.argv[1])
"""


def test_a_crash_while_writing_leaves_the_last_good_checkpoint(tmp_path):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"loops": {}, "weights": torch.ones(50_000)}, target)
    done = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING, str(target)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGKILL
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.ones(50_000))
    partial = [p for p in tmp_path.iterdir() if p != target]
    assert len(partial) == 1 and 0 < partial[0].stat().st_size  # the half-written file, under a name that is no checkpoint
    assert newest_resumable_checkpoint(tmp_path) == target


def _write(path, mtime, training_state=True):
    torch.save({"loops": {}, "global_step": 1} if training_state else {"state_dict": {}}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_a_truncated_checkpoint_is_named_with_the_newest_good_one(tmp_path):
    _write(tmp_path / "step0000004.ckpt", 1000)
    good = _write(tmp_path / "step0000008.ckpt", 2000)
    broken = _write(tmp_path / "last.ckpt", 3000)
    broken.write_bytes(broken.read_bytes()[:200])
    os.utime(broken, (3000, 3000))
    _write(tmp_path / "averaged.ckpt", 4000, training_state=False)  # evaluation only: never resumed from
    with pytest.raises(ValueError, match=f"cannot resume from checkpoint {broken}.*newest good checkpoint there is {good}"):
        resolve_resume_checkpoint(broken, tmp_path)
    assert resolve_resume_checkpoint("last", tmp_path) == str(good)
    assert resolve_resume_checkpoint(tmp_path, tmp_path / "elsewhere") == str(good)
    assert resolve_resume_checkpoint("last", tmp_path / "no_run_yet") is None  # a first run starts afresh
    assert resolve_resume_checkpoint(good, tmp_path) == str(good)


def test_resume_flag_reuses_the_runs_overrides(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=laptop_asr", "trainer.max_epochs=3"]))
    assert expand_resume([f"resume={tmp_path}", "trainer.max_epochs=5"]) == [
        "experiment=laptop_asr", f"hydra.run.dir={tmp_path}", "ckpt_path=last", "trainer.max_epochs=5"]
    assert expand_resume(["task=asr"]) == ["task=asr"]


# Every source of randomness on: shuffling, crops and time masks, training noise, LoRA and
# Whisper dropout, a DataLoader worker. 16 steps an epoch, a step checkpoint every 4.
RESUMABLE = [*TINY, "data.synthetic.n_train=16", "data.max_frames=30", "data.augment=true",
             "data.train_noise.snr_db=[0,null]", "model.llm.lora.dropout=0.1", "model.audio_encoder.config.dropout=0.1",
             "data.num_workers=1", "trainer.max_epochs=2", "checkpoint.every_n_steps=4", "checkpoint.keep_last_k_steps=2",
             "trainer.accelerator=cpu", "run_test=false"]
KILL_AT_STEP = 22  # after the checkpoint of step 20, before that of step 24, in the second epoch

# scripts/train.py with one more callback, which kills its own process with SIGKILL (no cleanup,
# no flush) when the given optimizer step has been trained.
TRAIN_AND_KILL = textwrap.dedent("""
    import os, runpy, signal, sys
    import lightning as L
    from avsr_sinks.training import pipeline

    class KillAtStep(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = pipeline._callbacks
    pipeline._callbacks = lambda cfg, output_dir: [*callbacks(cfg, output_dir), KillAtStep()]
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def _train(tmp_path, *arguments, kill_at_step=None):
    command = [sys.executable, *(["-c", TRAIN_AND_KILL] if kill_at_step else []), str(ROOT / "scripts" / "train.py"),
               *RESUMABLE, f"data.cache_dir={tmp_path / 'cache'}", *arguments]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "KILL_AT_STEP": str(kill_at_step)}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)


def _logged_losses(run_dir):
    """(step, train/loss) of the newest CSV log of a run folder (a resumed run writes a new version)."""
    newest = max((run_dir / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(open(newest / "metrics.csv")) if r["train/loss"]]


def _trained_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def in_peft_format(checkpoint_path, written):
    """A copy of a checkpoint as training wrote it while peft's trainable_token_indices trained the
    added token rows: the same values under peft's key."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    rows = [key for key in state if key.endswith("embed_tokens.added_rows")]
    assert len(rows) == 1, list(state)
    old_key = rows[0].removesuffix("added_rows") + "token_adapter.trainable_tokens_delta.default"
    checkpoint["state_dict"] = {old_key if key == rows[0] else key: value for key, value in state.items()}
    torch.save(checkpoint, written)
    return written


def test_a_run_killed_between_checkpoints_resumes_exactly(tmp_path):
    uninterrupted = _train(tmp_path, f"hydra.run.dir={tmp_path / 'uninterrupted'}")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    started = time.perf_counter()
    killed = _train(tmp_path, f"hydra.run.dir={tmp_path / 'killed'}", kill_at_step=KILL_AT_STEP)
    killed_seconds = time.perf_counter() - started
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").glob("*.ckpt"))
    assert checkpoints == ["epoch000.ckpt", "last.ckpt", "step0000016.ckpt", "step0000020.ckpt"]  # newest 2 steps kept

    resumed = _train(tmp_path, f"resume={tmp_path / 'killed'}")  # the run's own overrides, its folder, ckpt_path=last
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {tmp_path / 'killed' / 'checkpoints'}" in resumed.stderr

    expected = _logged_losses(tmp_path / "uninterrupted")
    assert [step for step, _ in expected] == list(range(32))
    # The resumed run trains each step after the last checkpoint (step 20) once, in order, with
    # bit-identical losses: the same batches, crops, masks, noise and dropout masks.
    assert _logged_losses(tmp_path / "killed") == expected[20:]
    final, reference = _trained_weights(tmp_path / "killed"), _trained_weights(tmp_path / "uninterrupted")
    assert final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in reference)

    # train/minutes goes on from the training time the step-20 checkpoint holds, which the killed
    # process (timed here from outside) spent, in part, before it died.
    checkpoint = torch.load(tmp_path / "killed" / "checkpoints" / "step0000020.ckpt", map_location="cpu", weights_only=True)
    before = next(state["seconds"] for name, state in checkpoint["callbacks"].items() if "TrainingClock" in name)
    assert 0 < before < killed_seconds
    newest = max((tmp_path / "killed" / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    minutes = [float(r["train/minutes"]) for r in csv.DictReader(open(newest / "metrics.csv")) if r.get("train/minutes")]
    assert minutes and minutes[0] * 60 > before and minutes == sorted(minutes)


def test_two_process_ddp_resumes_every_rank_exactly(tmp_path):
    # 8 steps an epoch on each of the 2 ranks; resumed from the step-12 checkpoint, in the second epoch.
    ddp = ["trainer.devices=2", "trainer.strategy=ddp", "checkpoint.keep_last_k_steps=4"]
    uninterrupted = _train(tmp_path, f"hydra.run.dir={tmp_path / 'uninterrupted'}", *ddp)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    # Resumed from the step-12 checkpoint as the peft version wrote it: its token rows load too.
    step12 = in_peft_format(tmp_path / "uninterrupted" / "checkpoints" / "step0000012.ckpt", tmp_path / "step12_peft.ckpt")
    resumed = _train(tmp_path, f"hydra.run.dir={tmp_path / 'resumed'}", f"ckpt_path={step12}", *ddp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = _logged_losses(tmp_path / "uninterrupted")
    assert [step for step, _ in expected] == list(range(16))
    assert _logged_losses(tmp_path / "resumed") == expected[12:]  # rank 0's losses
    # The ranks' gradients are averaged at every step: equal final weights need every rank's data
    # and dropout to have continued exactly.
    final, reference = _trained_weights(tmp_path / "resumed"), _trained_weights(tmp_path / "uninterrupted")
    assert all(torch.equal(final[k], reference[k]) for k in reference)
