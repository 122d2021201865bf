"""Preprocess a tree of raw videos in parallel into the auto_avsr layout with a label CSV.

Output: ``out_root/<dataset>/<rel_path>.mp4`` (+ ``.wav``), ``out_root/<dataset>.csv`` (5-field
rows; transcript from ``<rel_path>.txt`` beside the video if present), and
``out_root/<dataset>_failures.csv`` listing clips that produced nothing and why.
"""

from __future__ import annotations

import csv
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
from tqdm import tqdm

from avsr_sinks.data.manifest import LabelRow, write_label_csv
from avsr_sinks.data.preprocessing.clip import ClipResult, process_clip
from avsr_sinks.data.preprocessing.landmarks import LandmarkDetector

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass
class PrepareReport:
    """Outcome of a run: per-clip results and where the CSVs went."""

    results: list[ClipResult] = field(default_factory=list)
    label_csv: Path | None = None
    failures_csv: Path | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def summary(self) -> str:
        no_audio = [r.rel_path for r in self.results if r.status == "ok" and not r.has_audio]
        lines = [f"{len(self.results)} clips: {self.count('ok')} done, {self.count('skipped')} already done, "
                 f"{self.count('failed')} failed (see {self.failures_csv})", f"label CSV: {self.label_csv}"]
        lines += [f"  failed {r.rel_path}: {r.message}" for r in self.results if r.status == "failed"][:20]
        lines += [f"  no audio (no wav written): {p}" for p in no_audio[:20]]
        return "\n".join(lines)


def check_paths(in_root: Path, out_root: Path) -> None:
    """Refuse an output directory that is, or is inside, the input directory: writing there
    could overwrite the user's videos (same names, .mp4)."""
    if not in_root.is_dir():
        raise FileNotFoundError(f"input directory {in_root} does not exist: pass the folder holding the raw videos")
    in_abs, out_abs = in_root.resolve(), out_root.resolve()
    if out_abs == in_abs or in_abs in out_abs.parents:
        raise ValueError(f"output directory {out_root} is inside the input directory {in_root}: "
                         f"choose an output directory outside it so no input can be overwritten")


def find_clips(in_root: Path) -> list[str]:
    """Relative paths (no extension, posix) of every video under in_root, sorted."""
    return sorted(p.relative_to(in_root).with_suffix("").as_posix()
                  for p in in_root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def _video_path(in_root: Path, rel_path: str) -> Path:
    return next(p for p in (in_root / (rel_path + s) for s in VIDEO_SUFFIXES) if p.is_file())


def _audio_path(audio_root: Path | None, rel_path: str) -> Path | None:
    if audio_root is None:
        return None
    return next((p for p in (audio_root / (rel_path + s) for s in AUDIO_SUFFIXES) if p.is_file()), None)


_DETECTOR: LandmarkDetector | None = None


def _worker(job: tuple) -> ClipResult:
    global _DETECTOR  # one detector per process: loading the 100 MB model per clip is slow
    if _DETECTOR is None:
        _DETECTOR = LandmarkDetector()
    video, rel_path, out_stem, audio_file, smooth_window = job
    result = process_clip(video, rel_path, out_stem, _DETECTOR, audio_file, smooth_window)
    result.matrices = None  # not needed by the driver; keeps inter-process traffic small
    return result


def _frame_count(mp4: Path) -> int:
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        return stream.frames or sum(1 for _ in container.decode(stream))


def prepare(in_root: str | Path, out_root: str | Path, dataset: str, audio_root: str | Path | None = None,
            workers: int = 1, smooth_window: int = 5) -> PrepareReport:
    """Preprocess every video under ``in_root``; resumable (finished clips are skipped)."""
    in_root, out_root = Path(in_root), Path(out_root)
    check_paths(in_root, out_root)
    audio_root = Path(audio_root) if audio_root else None
    clips = find_clips(in_root)
    if not clips:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {in_root}")
    jobs = [(_video_path(in_root, rel), rel, out_root / dataset / rel, _audio_path(audio_root, rel), smooth_window)
            for rel in clips]
    progress = dict(total=len(jobs), desc=f"prepare {dataset}", unit="clip")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_worker, jobs), **progress))
    else:
        results = [_worker(job) for job in tqdm(jobs, **progress)]

    report = PrepareReport(results, out_root / f"{dataset}.csv", out_root / f"{dataset}_failures.csv")
    rows = []
    for job, r in zip(jobs, results):
        if r.status == "failed":
            continue
        n = r.n_frames if r.status == "ok" else _frame_count(job[2].with_suffix(".mp4"))
        text = job[0].with_suffix(".txt")
        transcript = " ".join(text.read_text(encoding="utf-8").lower().split()) if text.is_file() else ""
        rows.append(LabelRow(dataset, r.rel_path, n, "", transcript))
    write_label_csv(report.label_csv, rows)
    with report.failures_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rel_path", "reason"])
        writer.writerows([r.rel_path, r.message] for r in results if r.status == "failed")
    return report
