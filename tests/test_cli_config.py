"""Command-line overrides and config errors: one line naming the key, exit status 2, before anything loads."""

import re
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr_sinks.training import cli
from avsr_sinks.training.cli_overrides import normalize_overrides
from avsr_sinks.training.config_validation import ConfigError, trainer_parameters, validate_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = str(ROOT / "configs")
ONE_LINE = re.compile(r"config error: (?P<key>[^=\s]+)=(?P<value>.*?): (?P<problem>.+); (?P<fix>.+)")


def _config(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=normalize_overrides(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=False)


def test_the_paper_command_line_parses_as_written():
    cfg = cli.check_command_line(CONFIGS, "train", ["task=avsr", "compression=16,5", "decor.lambda=100"])
    assert cfg["task"]["name"] == "avsr" and cfg["compression"] == [16, 5] and cfg["decor"]["lambda"] == 100
    assert cli.check_command_line(CONFIGS, "train", ["task=asr", "compression=32"])["compression"] == 32


def test_default_is_the_demo():
    cfg = _config()
    assert cfg["data"]["kind"] == "synthetic" and cfg["model"]["llm"]["path"] == "tiny-demo"
    validate_config(cfg)


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
        with pytest.raises(ConfigError) as error:
            validate_config(_config("experiment=paper_avsr_a16_v5", *steps[: i + 1]))
        assert error.value.key == key
    cfg = _config("experiment=paper_avsr_a16_v5", *steps)
    assert cfg["compression"] == [16, 5] and cfg["trainer"]["precision"] == "bf16-mixed"


def test_decor_layers_are_checked_against_the_llm_config_json(tmp_path):
    """The layer count comes from the LLM folder's config.json, without loading weights."""
    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 6}')
    whisper = tmp_path / "whisper"
    whisper.mkdir()
    base = ["model=llama_avsr", "task=asr", "compression=4", f"model.llm.path={llm}", f"model.audio_encoder.path={whisper}"]
    cli.check_command_line(CONFIGS, "train", [*base, "decor.lambda=1", "decor.layers=[1,6]"])
    with pytest.raises(ConfigError, match=r"outside the LLM's 1\.\.6") as error:
        cli.check_command_line(CONFIGS, "train", [*base, "decor.lambda=1", "decor.layers=[2,7]"])
    assert error.value.key == "decor.layers"


def test_added_trainer_keys_must_be_lightning_trainer_arguments():
    import inspect

    import lightning

    assert set(trainer_parameters()) == set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}
    assert cli.check_command_line(CONFIGS, "train", ["+trainer.val_check_interval=0.5"])["trainer"]["val_check_interval"] == 0.5


def _touch(path: Path) -> str:
    path.write_bytes(b"not a checkpoint, never read: the config check comes first")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A checkpoint-shaped file (existence is all the config check looks at) and a raw-video folder."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "raw").mkdir()
    return {"ckpt": _touch(tmp / "last.ckpt"), "raw": str(tmp / "raw"), "tmp": str(tmp)}


# (script, arguments, the key the message must name, words it must hold). The file names are filled in from `files`.
INVOCATIONS = [
    ("train", ["decor.lamda=100"], "decor.lamda", "did you mean decor.lambda?"),
    ("train", ["lr=3e-4"], "lr", "did you mean optim.lr?"),
    ("train", ["+trainer.max_epoch=3"], "trainer.max_epoch", "did you mean trainer.max_epochs?"),
    ("train", ["task=foo"], "task", "choose one of asr, avsr, vsr"),
    ("train", ["experiment=paper_avsr"], "experiment", "paper_avsr_a16_v5"),
    ("train", ["decor.layers=[0,99]"], "decor.layers", "integer >= 1"),
    ("train", ["decor.lambda=100", "decor.layers=[2,9]"], "decor.layers", "outside the LLM's 1..4"),
    ("train", ["model.llm.tiny.num_layers=2", "decor.lambda=1"], "decor.layers", "empty for a 2-layer LLM"),
    ("train", ["generation.num_beams=0"], "generation.num_beams", "integer >= 1"),
    ("train", ["optim.lr=-1"], "optim.lr", "number > 0"),
    ("train", ["data.max_frames=0"], "data.max_frames", "integer >= 1"),
    ("train", ["model.projector.kind=qformer"], "model.projector.kind", "one of mlp, linear"),
    ("train", ["trainer.max_epochs=abc"], "trainer.max_epochs", "an integer"),
    ("train", ["data.strict=yes"], "data.strict", "true or false"),
    ("train", ["data.max_bad_fraction=5"], "data.max_bad_fraction", "in [0, 1]"),
    ("train", ["model.llm.lora.rank=0"], "model.llm.lora.rank", "integer >= 1"),
    ("train", ["compression=16"], "compression", "task avsr takes 2"),
    ("train", ["compression=16,5", "task=asr"], "compression", "task asr takes 1"),
    ("train", ["experiment=paper_avsr_a16_v5"], "model.llm.path", "is not set"),
    ("train", ["data=espeak"], "data", "audio only"),
    ("train", ["ckpt_path=/no/such/last.ckpt"], "ckpt_path", "does not exist"),
    ("train", ["decor.scope=middle"], "decor.scope", "one of all, prefix"),
    ("train", ["data.synthetic.max_words=0"], "data.synthetic", "min_words"),
    ("train", ["+data.synthetic.speakers=3"], "data.synthetic.speakers", "not a field of SyntheticCorpusConfig"),
    ("train", ["+optim.encoder_lr.lips=0.001"], "optim.encoder_lr", "keys among audio, video"),
    ("train", ["optim.encoder_lr={{audio: 0.001}}"], "optim.encoder_lr.audio", "add it with +optim.encoder_lr.audio=0.001"),
    ("train", ["data.train_noise.snr_db=[]"], "data.train_noise", "snr_db is empty"),
    ("train", ["data.train_noise.snr_db=[0]", "data.train_noise.kind=pink"], "data.train_noise", "pink"),
    ("train", ["data=librivox", "task=asr"], "data", "no train split"),
    ("train", ["model.video_encoder.lora.rank=8"], "model.video_encoder.lora.rank", "set it whole"),
    ("train", ["x=1,2"], "x", "sweep"),
    ("train", ["model.projector.ctc_warmup_steps=-1"], "model.projector.ctc_warmup_steps", "integer >= 0"),
    ("train", ["model.projector.ctc_warmup_steps=50", "trainer.max_steps=50"], "model.projector.ctc_warmup_steps",
     "no step for the LLM"),
    ("train", ["model.audio_encoder.num_layers=0"], "model.audio_encoder.num_layers", "integer >= 1"),
    ("train", ["model.audio_encoder.num_layers=3"], "model.audio_encoder.num_layers", "has 2 layers"),  # the demo's Whisper
    ("eval", [], "ckpt", "is not set"),
    ("eval", ["ckpt=/no/such/last.ckpt"], "ckpt", "does not exist"),
    ("eval", ["ckpt={ckpt}", "split=train"], "split", "one of test, val"),
    ("eval", ["ckpt={ckpt}", "eval.snr=[loud]"], "eval.snr", "clean"),
    ("eval", ["ckpt={ckpt}", "act.beta=2"], "act.beta", "in [0, 1]"),
    ("eval", ["ckpt={ckpt}", "data=librivox", "split=val"], "data", "use split=test"),
    ("eval", ["ckpt={ckpt}", "data.max_frames=100"], "data.max_frames", "did you mean data.eval_max_frames?"),
    ("analyze", ["ckpt={ckpt}", "num_samples=0"], "num_samples", "integer >= 1"),
    ("compare", ["runs.base={ckpt}", "bootstrap.confidence=1.5"], "bootstrap.confidence", "in (0, 1)"),
    ("compare", ["runs.base={ckpt}", "runs.decor=/no/such.ckpt"], "runs.decor", "does not exist"),
    ("search_act_heads", ["ckpt={ckpt}", "budget=0"], "budget", "integer >= 1"),
    ("search_act_heads", ["ckpt={ckpt}", "layers=[-1]"], "layers", "integer >= 0"),
    ("validate_data", ["data=lrs3"], "data.root", "is not set"),
    ("validate_data", ["data=librivox"], "modalities", "audio only"),
    ("validate_data", ["splits=[dev]"], "splits", "one of train, val, test"),
    ("validate_data", ["compression=[4]"], "compression", "one rate per modality"),
    ("prepare_data", ["/no/such/folder", "{tmp}/out", "--dataset", "x"], "in_dir", "is not a folder"),
    ("prepare_data", ["{raw}", "{raw}/out", "--dataset", "x"], "out_dir", "inside in_dir"),
    ("prepare_data", ["{raw}", "{tmp}/out", "--dataset", "x", "--workers", "0"], "--workers", "integer >= 1"),
    ("prepare_data", ["{raw}", "{tmp}/out"], "--dataset", "is required"),
]


@pytest.mark.parametrize("script, arguments, key, words", INVOCATIONS, ids=[f"{s}:{' '.join(a)}" for s, a, _, _ in INVOCATIONS])
def test_malformed_invocation_is_one_line_naming_the_key_before_the_job_starts(script, arguments, key, words, files,
                                                                               monkeypatch, capsys):
    """In this process (the interpreter start is paid once): the script's real entry point, with
    probes on what would start the job (Hydra's run of the task, the preprocessing driver)."""
    from avsr_sinks.data.preprocessing import driver

    def job_started(*args, **kwargs):
        raise AssertionError("the job started: the config check let the mistake through")

    monkeypatch.setattr(cli.hydra, "main", job_started)
    monkeypatch.setattr(driver, "prepare", job_started)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *(a.format(**files) for a in arguments), f"hydra.run.dir={files['tmp']}/h"]
                        if script != "prepare_data" else [f"{script}.py", *(a.format(**files) for a in arguments)])
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(ROOT / "scripts" / f"{script}.py"), run_name="__main__")
    out, err = capsys.readouterr()
    assert exit_status.value.code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    parsed = ONE_LINE.fullmatch(lines[0])
    assert parsed is not None, lines[0]
    assert parsed["key"] == key and words in lines[0], lines[0]


@pytest.mark.parametrize("script, arguments", [
    ("train", []), ("train", ["experiment=demo_decor"]), ("train", ["experiment=demo_sink_logit"]),
    ("train", ["experiment=demo_gated_attention"]), ("train", ["task=vsr"]), ("train", ["trainer=gpu", "logger=csv"]),
    ("train", ["data.train_noise.snr_db=[-5,0,null]", "+trainer.val_check_interval=0.5", "+optim.encoder_lr.audio=1e-3"]),
    ("train", ["experiment=paper_avsr_a16_v5", "model.llm.path={tmp}", "model.audio_encoder.path={tmp}",
               "model.video_encoder.checkpoint={ckpt}", "data.root={tmp}", "data.train_csv={ckpt}", "data.val_csv={ckpt}",
               "data.test_csv={ckpt}", "model.video_encoder.lora={{rank: 16, alpha: 32, dropout: 0.0}}"]),
    ("eval", ["ckpt={ckpt}", "eval.snr=[-5,0,clean]", "act.heads_file={ckpt}"]), ("eval", ["ckpt={ckpt}", "data=librivox"]),
    ("analyze", ["ckpt={ckpt}", "split=train"]), ("compare", ["runs.base={ckpt}", "runs.decor={ckpt}"]),
    ("search_act_heads", ["ckpt={ckpt}", "layers=[1]"]), ("validate_data", []),
    ("validate_data", ["data=espeak", "modalities=[audio]", "compression=[4]", "splits=[test]"]),
])
def test_valid_invocations_pass(script, arguments, files):
    cli.check_command_line(CONFIGS, script, [a.format(**files) for a in arguments])


def test_table_covers_every_script():
    assert {s for s, *_ in INVOCATIONS} == {"train", "eval", "analyze", "compare", "search_act_heads", "validate_data",
                                            "prepare_data"}
    assert len(INVOCATIONS) >= 20


@pytest.mark.parametrize("script, arguments, key", [
    ("train", ["decor.lamda=100"], "decor.lamda"),
    ("train", ["generation.num_beams=0"], "generation.num_beams"),
    ("train", ["task=foo"], "task"),
    ("eval", ["ckpt=/no/such/last.ckpt"], "ckpt"),
    ("validate_data", ["data=lrs3"], "data.root"),
    ("prepare_data", ["/no/such/folder", "out", "--dataset", "x"], "in_dir"),
])
def test_real_invocation_exits_2_with_one_line_in_under_3_seconds(script, arguments, key, tmp_path):
    """A fresh interpreter, as a user runs it: nothing heavy (torch) may load before the answer."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *arguments], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    seconds = time.perf_counter() - start
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and ONE_LINE.fullmatch(done.stderr.strip())["key"] == key, done.stderr
    assert seconds < 3, f"{seconds:.1f} s"
    assert not (tmp_path / "outputs").exists()  # no run folder either


def test_normalize_overrides_only_touches_compression():
    assert normalize_overrides(["compression=16,5", "x=1,2", "compression=[1,2]", "compression=4"]) == [
        "compression=[16,5]", "x=1,2", "compression=[1,2]", "compression=4"]
