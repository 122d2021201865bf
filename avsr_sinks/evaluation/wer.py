"""Word error rate with jiwer, on normalised text.

Normalisation (applied to references and hypotheses alike): lowercase, Unicode NFKC, every
character that is not a letter, digit, apostrophe or space becomes a space, then runs of
whitespace collapse to one. LRS2/LRS3 transcripts are upper-case words without punctuation,
so this makes them comparable with an LLM's cased, punctuated output.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

_NOT_WORD = re.compile(r"[^\w' ]|_")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_NOT_WORD.sub(" ", text).split())


@dataclass
class UtteranceErrors:
    id: str
    reference: str
    hypothesis: str
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass
class WERResult:
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    utterances: list[UtteranceErrors]
    # What the utterances leave out of the split: bad samples not decoded, as (id, reason); rows
    # that the dataset's length limits filtered out; hypotheses cut by generation.max_new_tokens.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    filtered: int = 0
    at_token_limit: int = 0

    def summary(self) -> dict:
        return {
            "wer": self.wer,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "reference_words": self.reference_words,
            "utterances": len(self.utterances),
            "skipped": len(self.skipped),
            "filtered": self.filtered,
            "at_token_limit": self.at_token_limit,
        }


def corpus_wer(ids: list[str], references: list[str], hypotheses: list[str]) -> WERResult:
    """Corpus-level WER (total errors / total reference words) and per-utterance counts."""
    if not (len(ids) == len(references) == len(hypotheses)):
        raise ValueError(f"got {len(ids)} ids, {len(references)} references, {len(hypotheses)} hypotheses")
    utterances = []
    for uid, ref, hyp in zip(ids, references, hypotheses):
        ref_n, hyp_n = normalize_text(ref), normalize_text(hyp)
        if not ref_n:
            raise ValueError(f"utterance {uid}: empty reference transcript after normalisation")
        # jiwer refuses an empty hypothesis; every reference word is then a deletion.
        if hyp_n:
            out = jiwer.process_words(ref_n, hyp_n)
            s, d, i = out.substitutions, out.deletions, out.insertions
        else:
            s, d, i = 0, len(ref_n.split()), 0
        utterances.append(UtteranceErrors(uid, ref_n, hyp_n, s, d, i, len(ref_n.split())))
    words = sum(u.reference_words for u in utterances)
    subs = sum(u.substitutions for u in utterances)
    dels = sum(u.deletions for u in utterances)
    ins = sum(u.insertions for u in utterances)
    return WERResult((subs + dels + ins) / max(words, 1), subs, dels, ins, words, utterances)


def recount_utterance_csv(path: str | Path) -> WERResult:
    """The corpus WER of a per-utterance CSV (``<split>_utterances.csv`` of an evaluation),
    recounted from its id, reference and hypothesis columns, not from the error counts written
    beside them: a check that a reported WER follows from the hypotheses it lists."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"id", "reference", "hypothesis"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise ValueError(f"{path}: expected a header with id, reference, hypothesis and one row per utterance"
                         + (f"; missing {sorted(missing)}" if rows else "; the file has no rows"))
    return corpus_wer([r["id"] for r in rows], [r["reference"] for r in rows], [r["hypothesis"] for r in rows])
