"""FSDP2 (trainer=fsdp) with two gloo processes on the CPU: the same training as DDP, single-file
checkpoints that evaluation reads, exact resume; and the configs it refuses."""

import pytest
import torch

from avsr_sinks.training.checkpoints import load_trained_model
from avsr_sinks.training.config_validation import ConfigError
from avsr_sinks.training.sharding import STRATEGY_NAME, TrainedStateModelParallelStrategy, build_strategy
from test_resume import _logged_losses, _train, _trained_weights, in_peft_format

# Gradient clipping is on but does not bind: FSDP2 takes the gradient norm over the shards (another
# summation order), and where clipping at 1.0 binds, one ulp of its factor grows, through Adam's
# steps on the from-scratch video encoder, past the weights' tolerance within the 8 steps.
TWO_CPU_PROCESSES = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
                     "model.llm.lora.dropout=0.0", "model.audio_encoder.config.dropout=0.0",
                     "trainer.gradient_clip_val=1000.0"]
FSDP = ["trainer=fsdp", "trainer.precision=32-true"]


def test_fsdp2_trains_as_ddp_and_writes_checkpoints_that_evaluate_and_resume(tmp_path):
    ddp = _train(tmp_path, f"hydra.run.dir={tmp_path / 'ddp'}", *TWO_CPU_PROCESSES, "trainer.strategy=ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    sharded = _train(tmp_path, f"hydra.run.dir={tmp_path / 'fsdp'}", *TWO_CPU_PROCESSES, *FSDP)
    assert sharded.returncode == 0, sharded.stderr[-3000:]

    # 8 steps a rank. Sharded gradients are reduce-scattered instead of all-reduced: another float
    # summation order, so equal to rounding, not bit for bit.
    expected, got = _logged_losses(tmp_path / "ddp"), _logged_losses(tmp_path / "fsdp")
    assert [step for step, _ in got] == [step for step, _ in expected] == list(range(8))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], rel=1e-5)
    reference, weights = _trained_weights(tmp_path / "ddp"), _trained_weights(tmp_path / "fsdp")
    assert weights.keys() == reference.keys()  # the trained parameters only, whole, in one file
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], rtol=1e-4, atol=1e-6, msg=key)

    model, _ = load_trained_model(tmp_path / "fsdp" / "checkpoints" / "last.ckpt")  # what eval.py and analyze.py do
    assert all(torch.equal(model.state_dict()[key.removeprefix("model.")], value) for key, value in weights.items())

    # Resumed from the step-4 checkpoint as the peft version wrote it: the strategy loads its token rows too.
    step4 = in_peft_format(tmp_path / "fsdp" / "checkpoints" / "step0000004.ckpt", tmp_path / "step4_peft.ckpt")
    resumed = _train(tmp_path, f"hydra.run.dir={tmp_path / 'resumed'}", *TWO_CPU_PROCESSES, *FSDP, f"ckpt_path={step4}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _logged_losses(tmp_path / "resumed") == got[4:]
    final = _trained_weights(tmp_path / "resumed")
    assert all(torch.equal(final[key], weights[key]) for key in weights)


def _config(**changes):
    return {"trainer": {"strategy": STRATEGY_NAME, "devices": 4, "num_nodes": 2}, "run_test": False,
            "sink_monitor": {"every_n_steps": 0}, **changes}


def test_the_fsdp2_strategy_spans_every_device_and_refuses_what_cannot_run_sharded():
    strategy = build_strategy(_config())
    assert isinstance(strategy, TrainedStateModelParallelStrategy)
    assert (strategy._data_parallel_size, strategy._tensor_parallel_size) == (8, 1)  # pure data parallel
    assert build_strategy(_config(trainer={"strategy": "ddp"})) == "ddp"
    with pytest.raises(ConfigError, match="run_test=false"):
        build_strategy(_config(run_test=True))
    with pytest.raises(ConfigError, match="sink_monitor.every_n_steps"):
        build_strategy(_config(sink_monitor={"every_n_steps": 10}))
    with pytest.raises(ConfigError, match="trainer.devices"):
        build_strategy(_config(trainer={"strategy": STRATEGY_NAME, "devices": "auto"}))
