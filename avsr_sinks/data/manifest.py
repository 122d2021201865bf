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
