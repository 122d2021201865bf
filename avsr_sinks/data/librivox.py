"""Five real read-speech utterances (LibriVox, "Sense and Sensibility") as an evaluation-only corpus.

Debian's ``pocketsphinx-testdata`` ships them as 16 kHz wavs with a ``transcription`` file
(``<s> text </s> (fileid)`` per line). They are the only real human speech on an offline
machine: a check that a model fine-tuned on synthetic speech still hears people. Copied once
into the audio-only auto_avsr layout: ``root/librivox/test/<fileid>.wav`` and
``root/labels/librivox_test.csv``, with ``root = cache_dir/librivox``. There is only a test split.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from .corpus_cache import build_once
from .manifest import LabelRow, write_label_csv
from .media import SAMPLE_RATE, SAMPLES_PER_FRAME

DEFAULT_SOURCE = Path("/usr/share/pocketsphinx/test/data/librivox")
DATASET_NAME = "librivox"
INSTALL_HINT = "apt-get install -y pocketsphinx-testdata"
TRANSCRIPTION_LINE = re.compile(r"<s>(.*)</s>\s*\((\S+)\)")


@dataclass(frozen=True)
class LibrivoxCorpus:
    """The copied utterances under ``root/librivox/test`` and their label CSV."""

    root: Path
    test_csv: Path


def read_transcription(source: str | Path) -> list[tuple[str, str]]:
    """(fileid, transcript) pairs of ``source/transcription``, transcripts normalised as the CSV reader does."""
    path = Path(source) / "transcription"
    pairs = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = TRANSCRIPTION_LINE.fullmatch(line.strip())
        if match is None:
            raise ValueError(f"{path}:{line_no}: expected '<s> text </s> (fileid)', got {line!r}")
        pairs.append((match.group(2), " ".join(match.group(1).lower().split())))
    return pairs


def ensure_librivox_corpus(cache_dir: str | Path, source: str | Path = DEFAULT_SOURCE) -> LibrivoxCorpus:
    """Copy the utterances of ``source`` into ``cache_dir/librivox`` once; later calls reuse it."""
    source = Path(source).expanduser()

    def build(folder: Path) -> dict:
        if not (source / "transcription").is_file():
            raise FileNotFoundError(f"LibriVox test utterances not found in {source} (data.source): {INSTALL_HINT}")
        rows = []
        for fileid, transcript in read_transcription(source):
            wav = source / f"{fileid}.wav"
            if not wav.is_file():
                raise FileNotFoundError(f"{wav} (listed in {source / 'transcription'}) is missing: {INSTALL_HINT}")
            info = sf.info(str(wav))
            if info.samplerate != SAMPLE_RATE or info.channels != 1:
                raise ValueError(f"{wav}: expected 16 kHz mono, got {info.samplerate} Hz x {info.channels}")
            target = folder / DATASET_NAME / "test" / wav.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wav, target)
            rows.append(LabelRow(DATASET_NAME, f"test/{fileid}", math.ceil(info.frames / SAMPLES_PER_FRAME), "",
                                 transcript))
        write_label_csv(folder / "labels" / f"{DATASET_NAME}_test.csv", rows)
        return {"source": str(source), "utterances": len(rows)}

    root = build_once(cache_dir, DATASET_NAME, build)
    return LibrivoxCorpus(root, root / "labels" / f"{DATASET_NAME}_test.csv")
