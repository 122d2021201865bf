"""The analysis notebook runs top to bottom (tiny untrained model, tiny corpus) and writes its figures."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def test_sink_analysis_notebook_executes(tmp_path):
    notebook = nbformat.read(ROOT / "notebooks" / "sink_analysis.ipynb", as_version=4)
    parameters = notebook.cells[1]
    assert parameters.source.startswith("CHECKPOINT = None")
    overrides = [f"data.cache_dir={tmp_path / 'cache'}", "data.synthetic.n_train=2", "data.synthetic.n_val=2",
                 "data.synthetic.n_test=2"]
    parameters.source = (f"CHECKPOINT = None\nOVERRIDES = {json.dumps(overrides)}\nSPLIT = 'test'\n"
                         f"OUT_DIR = {str(tmp_path / 'report')!r}")
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 5
    assert (tmp_path / "report" / "summary.json").is_file()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert 0.0 <= summary["bos_alpha"] <= 1.0
