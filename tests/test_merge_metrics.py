"""results/laptop/merge_metrics.py: a resumed run's CSV logs joined into one, each step once."""

import csv
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "results" / "laptop" / "merge_metrics.py"
spec = importlib.util.spec_from_file_location("merge_metrics", SCRIPT)
merge_metrics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(merge_metrics)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_later_process_replaces_the_steps_it_retrained(tmp_path):
    # First process: steps 0-12; killed, resumed from the step-10 checkpoint; a second resume from 20.
    write(tmp_path / "csv" / "version_0" / "metrics.csv", "step,train/loss\n0,9\n5,8\n10,7\n12,6\n")
    write(tmp_path / "csv" / "version_1" / "metrics.csv", "step,train/loss,val/wer\n10,7.5,\n15,5,0.4\n20,4,\n")
    write(tmp_path / "csv" / "version_10" / "metrics.csv", "step,train/loss,val/wer\n20,4.5,\n25,3,0.2\n")
    fields, rows = merge_metrics.merged_rows(tmp_path)
    assert fields == ["step", "train/loss", "val/wer"]
    # version_10 sorts after version_1 by number, not by name
    assert [(r["step"], r["train/loss"], r.get("val/wer", "")) for r in rows] == [
        ("0", "9", ""), ("5", "8", ""), ("10", "7.5", ""), ("15", "5", "0.4"), ("20", "4.5", ""), ("25", "3", "0.2")]


def test_written_csv_reads_back(tmp_path, monkeypatch):
    write(tmp_path / "run" / "csv" / "version_0" / "metrics.csv", "step,a\n0,1\n")
    out = tmp_path / "merged.csv"
    monkeypatch.setattr("sys.argv", ["merge_metrics.py", str(tmp_path / "run"), str(out)])
    merge_metrics.main()
    assert list(csv.DictReader(out.open())) == [{"step": "0", "a": "1"}]
