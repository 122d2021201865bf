"""validate_manifest and scripts/validate_data.py on generated good and bad files."""

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsr_sinks.data import LabelRow, write_label_csv
from avsr_sinks.data.media import write_audio, write_video
from avsr_sinks.data.validation import validate_manifest

REPO = Path(__file__).resolve().parents[1]


def clip(root, name, n_frames, audio_frames=None):
    stem = root / "lrs2" / name
    write_video(stem.with_suffix(".mp4"), np.full((n_frames, 96, 96), 90, dtype=np.uint8))
    write_audio(stem.with_suffix(".wav"), np.full(640 * (audio_frames or n_frames), 0.1))
    return LabelRow("lrs2", name, n_frames, "1", "t")


@pytest.fixture
def corpus(tmp_path):
    rows = [clip(tmp_path, "good", 5), clip(tmp_path, "long", 40), LabelRow("lrs2", "gone", 5, "1", "t"),
            clip(tmp_path, "empty", 5), clip(tmp_path, "corrupt", 5), clip(tmp_path, "mismatch", 5, audio_frames=15)]
    (tmp_path / "lrs2" / "empty.wav").write_bytes(b"")
    (tmp_path / "lrs2" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(200)))
    write_label_csv(tmp_path / "l.csv", rows)
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_validate_manifest_reports_each_kind(corpus, workers):
    report = validate_manifest(corpus, corpus / "l.csv", max_frames=30, workers=workers, progress=False)
    found = {kind: sorted(sample_id for sample_id, _, _ in items) for kind, items in report.problems.items()}
    assert found == {"missing": ["lrs2/gone", "lrs2/gone"], "unreadable": ["lrs2/corrupt"], "empty": ["lrs2/empty"],
                     "too_long": ["lrs2/long"], "mismatched": ["lrs2/mismatch"]}
    assert report.n_samples == 6 and report.n_bad == 5
    paths = [path for _, path, _ in report.problems["missing"]]
    assert sorted(Path(p).suffix for p in paths) == [".mp4", ".wav"]
    assert "mismatched: 1" in report.summary()


def _cli(corpus, label_csv, *extra):
    return [str(REPO / "scripts/validate_data.py"), "data=lrs2", f"data.root={corpus}", f"data.train_csv={label_csv}",
            "splits=[train]", "workers=0", f"hydra.run.dir={corpus / 'hydra'}", *extra]


def test_cli_exit_status(corpus, monkeypatch, capsys):
    run = subprocess.run([sys.executable, *_cli(corpus, corpus / "l.csv", "max_frames=30")], capture_output=True, text=True)
    assert run.returncode == 1 and "6 samples checked" in run.stdout and "corrupt.mp4" in run.stdout
    missing = subprocess.run([sys.executable, *_cli(corpus, corpus / "l.csv", "splits=[train,val]")], capture_output=True, text=True)
    assert missing.returncode == 1 and "data.val_csv" in missing.stderr
    write_label_csv(corpus / "ok.csv", [LabelRow("lrs2", "good", 5, "1", "t")])
    monkeypatch.setattr(sys, "argv", _cli(corpus, corpus / "ok.csv"))
    with pytest.raises(SystemExit) as exit_status:  # in-process: one interpreter start is enough
        runpy.run_path(str(REPO / "scripts/validate_data.py"), run_name="__main__")
    assert exit_status.value.code == 0 and "0 bad" in capsys.readouterr().out
