"""Scan a corpus manifest for bad samples before training, in parallel: the media of every row, and
the rows the model cannot take (``SampleLimits``)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from .dataset import MODALITIES, BadSampleError, check_av_match, read_media
from .limits import LABEL_PROBLEM_KINDS, SampleLimits
from .manifest import LabelRow, read_label_csv
from .media import read_audio, read_video_gray

PROBLEM_KINDS = ("missing", "unreadable", "empty", "too_long", "mismatched", *LABEL_PROBLEM_KINDS)


@dataclass
class ValidationReport:
    """Problems by kind, each a list of (utterance id, path, detail); ``seconds`` is the scan's wall time."""

    n_samples: int
    problems: dict[str, list[tuple[str, str, str]]] = field(default_factory=lambda: {k: [] for k in PROBLEM_KINDS})
    seconds: float = 0.0

    @property
    def n_bad(self) -> int:
        return len({sample_id for found in self.problems.values() for sample_id, _, _ in found})

    def summary(self, max_paths: int = 20) -> str:
        """Human-readable counts and (up to ``max_paths`` per kind) paths."""
        lines = [f"{self.n_samples} samples checked in {self.seconds:.1f} s: {self.n_bad} bad"]
        for kind, found in self.problems.items():
            lines.append(f"  {kind}: {len(found)}")
            lines += [f"    {path}  {detail}".rstrip() for _, path, detail in found[:max_paths]]
            if len(found) > max_paths:
                lines.append(f"    ... and {len(found) - max_paths} more")
        return "\n".join(lines)


def check_row(row: LabelRow, root: Path, modalities: tuple[str, ...], max_frames: int | None,
              max_av_mismatch_frames: int) -> list[tuple[str, str, str]]:
    """Every problem of one sample as (kind, path, detail); empty when it is fine."""
    stem = row.media_stem(root)
    mp4_path, wav_path = row.media_path(root, ".mp4"), row.media_path(root, ".wav")
    problems = []
    if max_frames is not None and row.n_frames > max_frames:
        problems.append(("too_long", str(stem), f"{row.n_frames} frames > max_frames {max_frames}"))
    n_video = None
    try:
        if "video" in modalities:
            n_video = read_media(read_video_gray, mp4_path).shape[0]
            if abs(n_video - row.n_frames) > max_av_mismatch_frames:
                problems.append(("mismatched", str(mp4_path),
                                 f"video has {n_video} frames, the CSV says {row.n_frames}"))
    except BadSampleError as error:
        problems.append((error.kind, str(error.path), error.detail))
    try:
        if "audio" in modalities:
            n_samples = read_media(read_audio, wav_path).shape[0]
            if n_video is not None:
                check_av_match(wav_path, n_samples, n_video, max_av_mismatch_frames)
    except BadSampleError as error:
        problems.append((error.kind, str(error.path), error.detail))
    return problems


def validate_manifest(root: str | Path, label_csv: str | Path, modalities=MODALITIES, max_frames: int | None = None,
                      max_av_mismatch_frames: int = 2, workers: int | None = None,
                      progress: bool = True, limits: SampleLimits = SampleLimits()) -> ValidationReport:
    """Read every sample of ``label_csv`` under ``root`` and report missing, unreadable, empty,
    too long (over ``max_frames``) and audio/video-mismatched ones, with ``workers`` processes
    (default: all CPUs; 0 reads in this process), and the rows outside ``limits`` (empty
    transcripts always; shorter than a compression window, too long for the LLM)."""
    start = time.perf_counter()
    root = Path(root)
    rows = read_label_csv(label_csv, root=root)
    check = partial(check_row, root=root, modalities=tuple(modalities), max_frames=max_frames,
                    max_av_mismatch_frames=max_av_mismatch_frames)
    workers = (os.cpu_count() or 1) if workers is None else workers
    bar = partial(tqdm, total=len(rows), desc=f"validating {Path(label_csv).name}", unit="sample", disable=not progress)
    if workers == 0:
        results = list(bar(map(check, rows)))
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(bar(pool.map(check, rows, chunksize=max(1, min(64, len(rows) // (4 * workers) or 1)))))
    report = ValidationReport(len(rows))
    for row, problems in zip(rows, results):
        # The label checks here, in this process: limits may hold the run's tokenizer.
        problems = problems + [(kind, str(row.media_stem(root)), detail) for kind, detail in limits.problems(row)]
        for kind, path, detail in problems:
            report.problems[kind].append((row.utterance_id, path, detail))
    report.seconds = time.perf_counter() - start
    return report
