"""Command-line overrides and config errors, raised before anything loads."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr_sinks.training.config_validation import ConfigError, validate_config
from avsr_sinks.training.cli_overrides import normalize_overrides

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = str(ROOT / "configs")


def _config(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=normalize_overrides(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=False)


def test_the_paper_command_line_parses_as_written():
    cfg = _config("task=avsr", "compression=16,5", "decor.lambda=100")
    assert cfg["task"]["name"] == "avsr" and cfg["compression"] == [16, 5] and cfg["decor"]["lambda"] == 100
    validate_config(cfg)
    assert _config("task=asr", "compression=32")["compression"] == 32
    validate_config(_config("task=asr", "compression=32"))


def test_default_is_the_demo():
    cfg = _config()
    assert cfg["data"]["kind"] == "synthetic" and cfg["model"]["llm"]["path"] == "tiny-demo"
    validate_config(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["task=avsr", "compression=16"], "takes 2 positive integer"),
    (["task=asr", "compression=16,5"], "takes 1 positive integer"),
    (["task=vsr", "compression=0"], "positive integer"),
    (["decor.scope=middle"], "decor.scope"),
    (["decor.lambda=-1"], "decor.lambda"),
    (["baseline.kind=act"], "baseline.kind"),
    (["data.synthetic.max_words=0"], "data.synthetic"),
    (["+data.synthetic.speakers=3"], "data.synthetic"),
    (["data.train_noise.snr_db=[0]", "data.train_noise.kind=pink"], "data.train_noise"),
    (["+optim.encoder_lr.lips=0.001"], "optim.encoder_lr"),
    (["data.train_noise.snr_db=[]"], "data.train_noise"),
])
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_config(*overrides))


def test_paper_experiments_ask_for_each_missing_path(tmp_path):
    for name in ["paper_asr_a4", "paper_asr_a16", "paper_asr_a32", "paper_vsr_v1", "paper_vsr_v5",
                 "paper_avsr_a1_v1", "paper_avsr_a4_v2", "paper_avsr_a16_v5"]:
        with pytest.raises(ConfigError, match="model.llm.path"):
            validate_config(_config(f"experiment={name}"))
    llm = tmp_path / "llama"
    llm.mkdir()
    whisper = tmp_path / "whisper"
    whisper.mkdir()
    ckpt = tmp_path / "large_vox_iter5.pt"
    ckpt.write_bytes(b"")
    steps = [f"model.llm.path={llm}", f"model.audio_encoder.path={whisper}", f"model.video_encoder.checkpoint={ckpt}"]
    expected = ["model.audio_encoder.path", "model.video_encoder.checkpoint", "data.root"]
    for i, key in enumerate(expected):
        with pytest.raises(ConfigError, match=key):
            validate_config(_config("experiment=paper_avsr_a16_v5", *steps[: i + 1]))
    cfg = _config("experiment=paper_avsr_a16_v5", *steps)
    assert cfg["compression"] == [16, 5] and cfg["trainer"]["precision"] == "bf16-mixed"


def test_train_script_exits_with_the_config_error_before_loading_anything():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "task=avsr", "compression=4",
                          "hydra.run.dir=/tmp/avsr_sinks_cli_test"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "config error" in out.stderr and "compression" in out.stderr


def test_normalize_overrides_only_touches_compression():
    assert normalize_overrides(["compression=16,5", "x=1,2", "compression=[1,2]", "compression=4"]) == [
        "compression=[16,5]", "x=1,2", "compression=[1,2]", "compression=4"]
