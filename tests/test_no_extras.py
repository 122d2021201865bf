"""`pip install .` without extras trains, evaluates and analyses: matplotlib and wandb are made
unimportable in a fresh interpreter, which then runs train.py, eval.py and analyze.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

from test_end_to_end import TINY

ROOT = Path(__file__).resolve().parent.parent
# matplotlib_inline and mpl_toolkits come with matplotlib.
EXTRAS = ("matplotlib", "matplotlib_inline", "mpl_toolkits", "pylab", "wandb")

# Runs each (script, arguments) in this interpreter as if the extras were not installed: site-packages
# is replaced by a folder of links to everything in it but the extras (their modules and their
# metadata, which other libraries read to decide what is available); then prints which extras got
# imported (none may).
RUNNER = """
import json, os, re, runpy, site, sys, tempfile

installed = [path for path in sys.path if path.endswith("site-packages")]
without_extras = tempfile.mkdtemp()
for folder in installed:
    for name in os.listdir(folder):
        target = os.path.join(without_extras, name)
        if re.split(r"[-.]", name)[0].lower() not in {extras!r} and not os.path.exists(target):
            os.symlink(os.path.join(folder, name), target)
sys.path = [path for path in sys.path if path not in installed]
site.addsitedir(without_extras)
for script, arguments in json.loads(sys.argv[1]):
    sys.argv = [script, *arguments]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_status:
        if exit_status.code not in (None, 0):
            raise
print("extras imported:", [name for name in {extras!r} if name in sys.modules])
"""


def test_train_eval_and_analyze_run_without_matplotlib_and_wandb(tmp_path):
    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    jobs = [
        # logger=default: CSV and wandb, which is missing; the run must go on with CSV alone.
        ("scripts/train.py", [*[o for o in TINY if not o.startswith("logger.")], f"data.cache_dir={tmp_path / 'cache'}",
                              "trainer.max_epochs=1", "trainer.limit_train_batches=2", f"hydra.run.dir={run}"]),
        ("scripts/eval.py", [f"ckpt={ckpt}", "generation.num_beams=1", "generation.max_new_tokens=2",
                             f"hydra.run.dir={tmp_path / 'eval'}"]),
        ("scripts/analyze.py", [f"ckpt={ckpt}", "num_samples=1", f"hydra.run.dir={tmp_path / 'analyze'}"]),
    ]
    env = {key: value for key, value in os.environ.items() if key != "WANDB_MODE"}  # wandb would be on
    done = subprocess.run([sys.executable, "-c", RUNNER.format(extras=EXTRAS), json.dumps(jobs)], capture_output=True,
                          text=True, timeout=900, cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "extras imported: []" in done.stdout
    assert done.stdout.count("wandb logging off: wandb is not installed (pip install 'avsr_sinks[logging]'") == 1
    assert done.stdout.count("figures skipped, matplotlib is not installed (pip install 'avsr_sinks[plots]')") == 1
    assert (run / "csv" / "version_0" / "metrics.csv").is_file() and (run / "eval" / "test_wer.json").is_file()
    assert json.loads((tmp_path / "eval" / "wer_table.json").read_text())["rows"][0]["snr"] == "clean"
    reports = [path for path in (tmp_path / "analyze").iterdir() if path.is_dir() and path.name != ".hydra"]
    assert len(reports) == 1 and {"summary.json", "alpha.csv", "bos_cosine.csv", "contributions.csv"} <= {
        path.name for path in reports[0].iterdir()}
    assert not list((tmp_path / "analyze").rglob("*.png"))
