"""Label CSVs in the auto_avsr / Llama-AVSR layout.

A row is ``dataset,rel_path,n_video_frames,token_ids[,transcript]``; the media live at
``root/<dataset>/<rel_path>.mp4`` with the ``.wav`` beside it. auto_avsr writes four
fields (token ids of its sentencepiece model); Llama-AVSR adds the lowercase transcript.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelRow:
    dataset: str
    rel_path: str
    n_frames: int
    token_ids: str
    transcript: str | None = None

    def media_stem(self, root: str | Path) -> Path:
        """Path without extension: add ``.mp4`` or ``.wav``."""
        return Path(root) / self.dataset / self.rel_path

    def media_path(self, root: str | Path, extension: str) -> Path:
        """``root/<dataset>/<rel_path><extension>`` (appended: rel_path may contain dots)."""
        stem = self.media_stem(root)
        return stem.parent / (stem.name + extension)

    @property
    def utterance_id(self) -> str:
        return f"{self.dataset}/{self.rel_path}"


def write_label_csv(path: str | Path, rows: list[LabelRow]) -> None:
    """Write rows in the 5-field Llama-AVSR format (no header, as the originals)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        for row in rows:
            writer.writerow([row.dataset, row.rel_path, row.n_frames, row.token_ids, row.transcript or ""])


def auto_avsr_text_path(root: str | Path, dataset: str, rel_path: str) -> Path:
    """Where auto_avsr's preprocessing keeps an utterance's transcript.

    mpc001/auto_avsr (preparation/preprocess_lrs2lrs3.py) writes the clip to
    ``root/<dataset>/<dataset>_video_seg<N>s/<subset>/<spk>/<utt>.mp4`` and its text to the
    sibling tree ``<dataset>_text_seg<N>s`` with ``.txt``; the CSV's rel_path is the part after
    ``root/<dataset>/``.
    """
    first, sep, rest = rel_path.partition("/")
    return Path(root) / dataset / (first.replace("_video_seg", "_text_seg", 1) + sep + rest)


def read_label_csv(path: str | Path, root: str | Path | None = None) -> list[LabelRow]:
    """Read a label CSV: 5-field Llama-AVSR rows, or 4-field auto_avsr rows.

    A 4-field row has no transcript: it is read from auto_avsr's text file under ``root``
    (see :func:`auto_avsr_text_path`). A trailing ``.mp4`` in rel_path (auto_avsr keeps it) is
    dropped. Transcripts are lowercased and stripped. Anything else raises ``ValueError``
    naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label CSV {path} does not exist: check the corpus *_csv path")
    rows = []
    with path.open(newline="") as f:
        for line_no, fields in enumerate(csv.reader(f), start=1):
            if not fields or all(not x.strip() for x in fields):
                continue
            where = f"{path}:{line_no}"
            if len(fields) not in (4, 5):
                raise ValueError(f"{where}: expected 4 fields (dataset,rel_path,frames,token_ids) or 5 "
                                 f"(+ transcript), got {len(fields)}: {fields!r}")
            dataset, rel_path, frames = fields[0].strip(), fields[1].strip(), fields[2].strip()
            if not dataset or not rel_path:
                raise ValueError(f"{where}: empty dataset or rel_path field")
            try:
                n_frames = int(frames)
            except ValueError:
                raise ValueError(f"{where}: frame count {frames!r} is not an integer") from None
            if n_frames < 0:
                raise ValueError(f"{where}: negative frame count {n_frames}")
            if rel_path.endswith(".mp4"):
                rel_path = rel_path[: -len(".mp4")]
            if len(fields) == 5:
                transcript = fields[4]
            else:
                if root is None:
                    raise ValueError(f"{where}: a 4-field auto_avsr row needs the data root to find its "
                                     f"transcript text file; pass root=")
                text_file = auto_avsr_text_path(root, dataset, rel_path + ".txt")
                if not text_file.is_file():
                    raise ValueError(f"{where}: 4-field row without transcript and auto_avsr text file "
                                     f"{text_file} is missing; use a 5-field CSV or restore the text files")
                transcript = text_file.read_text(encoding="utf-8")
            rows.append(LabelRow(dataset, rel_path, n_frames, fields[3].strip(), " ".join(transcript.lower().split())))
    return rows
