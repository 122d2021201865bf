"""One Lightning CSV log of a run that was resumed: run_all.sh's ``collect`` writes it as train_metrics.csv.

    python results/laptop/merge_metrics.py RUN_DIR OUT_CSV

Each process of a run (the first and every ``resume=``) logs to its own RUN_DIR/csv/version_N/.
A resumed process starts again at its checkpoint's step, so the steps past that checkpoint were
logged twice; the later process's rows replace the earlier ones from its first step on, which
leaves each step once, as trained by the run's final history.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def merged_rows(run_dir: Path) -> tuple[list[str], list[dict]]:
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not versions:
        raise SystemExit(f"{run_dir / 'csv'}: no version_*/metrics.csv; is {run_dir} a folder written by scripts/train.py?")
    fields: list[str] = []
    rows: list[dict] = []
    for path in versions:
        with path.open() as handle:
            reader = csv.DictReader(handle)
            new = list(reader)
            fields += [f for f in reader.fieldnames or [] if f not in fields]
        if new:
            first_step = min(int(r["step"]) for r in new)
            rows = [r for r in rows if int(r["step"]) < first_step] + new
    return fields, rows


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    fields, rows = merged_rows(Path(sys.argv[1]))
    with open(sys.argv[2], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
