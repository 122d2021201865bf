"""An offline English speech corpus: generated sentences spoken by espeak-ng, for ASR fine-tuning.

Real pretrained models (Whisper tiny.en + SmolLM2-135M) need real words to adapt to, and a
CPU-only machine with no downloads has none: espeak-ng (Debian package ``espeak-ng``) speaks
the sentences of :mod:`avsr_sinks.data.sentences` (broad vocabulary, all sentences distinct,
so no test sentence is in train), each with its own voice, speed and pitch.

Voices are espeak-ng's English accents (``gmw/...``; the mbrola voices are not installed)
combined with its voice variants. Held-out speakers make the test honest: by default the
train and validation splits use the accents en-us, en-gb, en-gb-scotland, en-gb-x-rp,
en-us-nyc and en-gb-x-gbclan with the variants m1, m2, m3, m4, m6, f1, f2, f4, and the test
split uses only the accents en-029 (Caribbean) and en-gb-x-gbcwmd (West Midlands) with the
variants m5, m7, f3, f5: neither accent nor variant of a test utterance is heard in training.
``val_voices`` gives the validation split voices of its own, e.g. a training accent left out of
``train_voices``: a dev accent on which to choose what helps unheard accents without reading the
test accents (its voices must not be test voices).

Respelt training sentences (``phoneme_swap`` > 0): an accent the model has not heard says the
same phonemes with other sounds, and some words with other phonemes. To train on more
pronunciations than the six training accents give, a training utterance can be spoken from its
own phoneme string (``espeak-ng -x``) with some phonemes swapped for another of their class
(a vowel for a vowel, a stop for a stop, ...): each distinct phoneme of the utterance is swapped
with probability ``phoneme_swap``, every occurrence alike, as an accent would. The swaps are
drawn at random, not from the test accents' rules; validation and test utterances are never
respelt. What each respelt utterance was spoken from is in its utterances JSON (``phonemes``).

Audio: espeak-ng's 22050 Hz output resampled to 16 kHz, silence beyond 0.1 s trimmed at both
ends, peak-normalised to 0.9 times a per-utterance gain in [0.75, 1]. Audio-only layout of
auto_avsr's LRS3: ``root/espeak/<split>/<split>_<index>.wav`` and 5-field label CSVs
``root/labels/espeak_<split>.csv`` (the token-id field is empty: the LLM tokenizes the
transcript; n_frames counts 40 ms frames). What each utterance was drawn with (voice, speed,
pitch, gain) is in ``root/labels/espeak_<split>_utterances.json``.

Deterministic: sentences come from one seeded generator per split (test first, then val,
then train, each excluding the sentences of the ones before, so the test set does not change
with n_train), voice/speed/pitch/gain from one generator per utterance, so nothing depends on
the worker count. The cache folder is named by a hash of the config, ``GENERATOR_VERSION`` and
the espeak-ng version, and is built atomically (:func:`avsr_sinks.data.corpus_cache.build_once`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from .corpus_cache import build_once
from .manifest import LabelRow, write_label_csv
from .media import SAMPLE_RATE, SAMPLES_PER_FRAME, write_audio
from .sentences import LONGEST_SENTENCE, SHORTEST_SENTENCE, distinct_sentences

# Bump when the sentences or the audio processing change: a new version generates into a new folder.
GENERATOR_VERSION = 1
DATASET_NAME = "espeak"
SPLITS = ("train", "val", "test")
INSTALL_HINT = "apt-get install -y espeak-ng"

# espeak-ng's English voices of its own synthesizer (gmw/...), and the variants (!v/...) allowed.
ENGLISH_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6")
# Held-out speakers: no accent and no variant of the test voices is heard in training.
TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m6", "f1", "f2", "f4")
TEST_ACCENTS = ("en-029", "en-gb-x-gbcwmd")
TEST_VARIANTS = ("m5", "m7", "f3", "f5")
DEFAULT_TRAIN_VOICES = tuple(f"{accent}+{variant}" for accent in TRAIN_ACCENTS for variant in TRAIN_VARIANTS)
DEFAULT_TEST_VOICES = tuple(f"{accent}+{variant}" for accent in TEST_ACCENTS for variant in TEST_VARIANTS)
# The training accents with every variant the test voices do not use (m8 and the klatt ones added):
# 90 voices instead of 48, the test speakers still unheard (results/laptop/REPORT.md section 7b).
MORE_TRAIN_VOICES = tuple(f"{accent}+{variant}" for accent in TRAIN_ACCENTS for variant in VARIANTS
                          if variant not in TEST_VARIANTS)

SILENCE_KEPT_S = 0.1  # silence left before the first and after the last sound
SILENCE_LEVEL = 0.01  # below this fraction of the peak counts as silence
PEAK = 0.9
SENTENCE_STREAM, VOICE_STREAM, RESPELL_STREAM = 1, 2, 3  # tags that keep the seeded generators apart
# The phonemes a respelt utterance may swap, by class: espeak-ng's English mnemonics that
# `espeak-ng -x` writes for the training accents' speech of the corpus sentences (the held-out
# accents' own symbols, such as en-029's dental t[, are not among them). Others (syllabic @L,
# n-, pauses _:) are kept.
PHONEME_CLASSES = (
    ("0", "3", "3:", "@", "@2", "A:", "A@", "E", "I", "I2", "O:", "O@", "OI", "U", "U@", "V", "a", "a#",
     "aI", "aI@", "aU", "aa", "e@", "eI", "i", "i:", "i@", "o@", "oU", "u:"),  # vowels and diphthongs
    ("p", "b", "t", "d", "k", "g"),  # stops
    ("tS", "dZ"),  # affricates
    ("f", "v", "T", "D", "s", "z", "S", "Z", "h"),  # fricatives
    ("m", "n", "N"),  # nasals
    ("l", "r", "w", "j"),  # approximants
)
CLASS_OF = {phoneme: members for members in PHONEME_CLASSES for phoneme in members}
CONSONANTS = frozenset(phoneme for members in PHONEME_CLASSES[1:] for phoneme in members)
STRESS_MARKS = "',%="
PHONEME_SEPARATOR = "|"  # between phonemes in espeak-ng's [[...]] input: "a|I" is two, "aI" one
# Fields added after generator version 1 enter the cache folder's hash only when set (not at
# their default), so that the corpora generated before them keep their folders.
LATER_FIELDS = ("phoneme_swap", "phoneme_drop", "val_voices")


@dataclass(frozen=True)
class EspeakCorpusConfig:
    """What the corpus holds; every field changes the cache folder's hash."""

    n_train: int = 3000
    n_val: int = 200
    n_test: int = 300
    seed: int = 0
    train_voices: tuple[str, ...] = DEFAULT_TRAIN_VOICES
    test_voices: tuple[str, ...] = DEFAULT_TEST_VOICES
    min_speed: int = 130  # words per minute (espeak-ng -s)
    max_speed: int = 190
    min_pitch: int = 30  # 0..99 (espeak-ng -p)
    max_pitch: int = 70
    min_words: int = 4
    max_words: int = 16
    phoneme_swap: float = 0.0  # training split only: chance that a phoneme of an utterance is swapped (module doc)
    phoneme_drop: float = 0.0  # training split only: chance that a consonant of an utterance is left out
    val_voices: tuple[str, ...] = ()  # the validation split's own voices; empty: train_voices

    def __post_init__(self) -> None:
        where = "EspeakCorpusConfig"
        for name in ("train_voices", "test_voices", "val_voices"):
            voices = tuple(getattr(self, name))
            object.__setattr__(self, name, voices)
            if not voices and name != "val_voices":
                raise ValueError(f"{where}.{name} is empty: give at least one voice, e.g. en-us+m3")
            if len(set(voices)) != len(voices):
                raise ValueError(f"{where}.{name} lists a voice twice: {voices}")
            for voice in voices:
                accent, _, variant = str(voice).partition("+")
                if accent not in ENGLISH_VOICES or (variant and variant not in VARIANTS):
                    raise ValueError(f"{where}.{name}: {voice!r} is not <accent>[+<variant>] with an accent of "
                                     f"{ENGLISH_VOICES} and a variant of {VARIANTS}")
        for name in ("train_voices", "val_voices"):
            shared = sorted(set(getattr(self, name)) & set(self.test_voices))
            if shared:
                raise ValueError(f"{where}.test_voices must not be {name.removesuffix('_voices')} voices (the test "
                                 f"speakers are held out), both have {shared}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{where}.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("phoneme_swap", "phoneme_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{where}.{name} must be in [0, 1], got {getattr(self, name)}")
        for low, high, lowest, highest in (("min_speed", "max_speed", 80, 450), ("min_pitch", "max_pitch", 0, 99),
                                           ("min_words", "max_words", SHORTEST_SENTENCE, LONGEST_SENTENCE)):
            if not lowest <= getattr(self, low) <= getattr(self, high) <= highest:
                raise ValueError(f"{where}.{low}/{high}: need {lowest} <= {low} <= {high} <= {highest}, "
                                 f"got {getattr(self, low)} and {getattr(self, high)}")

    def split_size(self, split: str) -> int:
        """Number of utterances in ``split``."""
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]

    def split_voices(self, split: str) -> tuple[str, ...]:
        """The voices ``split`` is spoken with: the test split has its own, validation its own if given."""
        if split == "test":
            return self.test_voices
        return self.val_voices if split == "val" and self.val_voices else self.train_voices

    def digest(self, espeak: str) -> str:
        """Hash of the config, the generator version and the espeak-ng version: the cache folder's name."""
        defaults = {field.name: field.default for field in fields(self)}
        config = {key: value for key, value in asdict(self).items()
                  if key not in LATER_FIELDS or value != defaults[key]}
        text = json.dumps({"config": config, "generator": GENERATOR_VERSION, "espeak": espeak}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EspeakCorpus:
    """A generated corpus: wavs under ``root/espeak``, label CSVs under ``root/labels``."""

    root: Path
    train_csv: Path
    val_csv: Path
    test_csv: Path

    def utterances_json(self, split: str) -> Path:
        """Per utterance of ``split``: id, text, voice, speed, pitch and gain."""
        return self.root / "labels" / f"{DATASET_NAME}_{split}_utterances.json"


@dataclass(frozen=True)
class UtterancePlan:
    """Everything one utterance is rendered from."""

    split: str
    index: int
    text: str
    voice: str
    speed: int
    pitch: int
    gain: float
    phoneme_swap: float = 0.0
    phoneme_drop: float = 0.0

    @property
    def utterance_id(self) -> str:
        return f"{self.split}_{self.index:05d}"


def espeak_binary() -> str:
    """Path of espeak-ng; a clear error (with the install command) if it is missing."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise FileNotFoundError(f"espeak-ng is not installed (needed for data=espeak): {INSTALL_HINT}")
    return binary


@cache
def espeak_version() -> str:
    """``espeak-ng --version``: part of the cache key, as another version speaks differently."""
    return subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout.strip()


def corpus_sentences(config: EspeakCorpusConfig) -> dict[str, list[str]]:
    """Sentences per split, all distinct: test first, so it does not depend on n_train or n_val."""
    taken: set[str] = set()
    sentences = {}
    for split in ("test", "val", "train"):
        rng = np.random.default_rng([config.seed, SENTENCE_STREAM, SPLITS.index(split)])
        sentences[split] = distinct_sentences(rng, config.split_size(split), taken, config.min_words, config.max_words)
        taken.update(sentences[split])
    return sentences


def plan_corpus(config: EspeakCorpusConfig) -> list[UtterancePlan]:
    """Every utterance of the corpus; voice, speed, pitch and gain from one generator per utterance."""
    sentences = corpus_sentences(config)
    plans = []
    for split in SPLITS:
        voices = config.split_voices(split)
        for index, text in enumerate(sentences[split]):
            rng = np.random.default_rng([config.seed, VOICE_STREAM, SPLITS.index(split), index])
            plans.append(UtterancePlan(split, index, text, voices[int(rng.integers(len(voices)))],
                                       int(rng.integers(config.min_speed, config.max_speed + 1)),
                                       int(rng.integers(config.min_pitch, config.max_pitch + 1)),
                                       round(float(rng.uniform(0.75, 1.0)), 4),
                                       *((config.phoneme_swap, config.phoneme_drop) if split == "train" else (0.0, 0.0))))
    return plans


def _check_text(text: str) -> None:
    if not re.fullmatch(r"[a-z' ]+", text):
        raise ValueError(f"espeak-ng input {text!r} must be lowercase letters, apostrophes and spaces")


def _run_espeak(voice: str, *args: str) -> bytes:
    result = subprocess.run([espeak_binary(), "-v", voice, *args], capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"espeak-ng -v {voice} failed (exit {result.returncode}): "
                           f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def phonemize(text: str, voice: str) -> list[list[str]]:
    """The phonemes ``voice`` speaks ``text`` with, per word (espeak-ng's mnemonics, stress marks included)."""
    _check_text(text)
    output = _run_espeak(voice, "-q", "-x", f"--sep={PHONEME_SEPARATOR}", text).decode()
    return [word.split(PHONEME_SEPARATOR) for word in output.split()]


def spell_phonemes(words: list[list[str]]) -> str:
    """``words`` (per word, as :func:`phonemize` gives them) as espeak-ng reads them inside ``[[...]]``."""
    return " ".join(PHONEME_SEPARATOR.join(word) for word in words)


def _split_stress(phoneme: str) -> tuple[str, str]:
    bare = phoneme.lstrip(STRESS_MARKS)
    return phoneme[:len(phoneme) - len(bare)], bare


def _distinct(words: list[list[str]], among) -> list[str]:
    """The phonemes of ``among`` in ``words``, without stress marks, sorted: seeded draws over them
    do not depend on set order."""
    return sorted({_split_stress(phoneme)[1] for word in words for phoneme in word} & among)


def swap_phonemes(words: list[list[str]], probability: float, rng: np.random.Generator) -> list[list[str]]:
    """``words`` with each distinct phoneme of :data:`PHONEME_CLASSES` swapped, with ``probability``,
    for another of its class, every occurrence alike; stress marks stay where they were."""
    swaps = {}
    for phoneme in _distinct(words, CLASS_OF.keys()):
        if rng.random() < probability:
            others = [other for other in CLASS_OF[phoneme] if other != phoneme]
            swaps[phoneme] = others[int(rng.integers(len(others)))]
    return [[stress + swaps.get(bare, bare) for stress, bare in map(_split_stress, word)] for word in words]


def drop_phonemes(words: list[list[str]], probability: float, rng: np.random.Generator) -> list[list[str]]:
    """``words`` without each distinct consonant of :data:`PHONEME_CLASSES` drawn, with ``probability``:
    every occurrence goes; its stress mark moves to the phoneme after it; no word is emptied."""
    dropped = {phoneme for phoneme in _distinct(words, CONSONANTS) if rng.random() < probability}
    result = []
    for word in words:
        kept, carried = [], ""
        for phoneme in word:
            stress, bare = _split_stress(phoneme)
            if bare in dropped:
                carried += stress
            else:
                kept.append(carried + phoneme)
                carried = ""
        result.append(kept if kept else word)
    return result


def synthesize(text: str, voice: str, speed: int, pitch: int, phonemes: list[list[str]] | None = None) -> np.ndarray:
    """espeak-ng's speech of ``text`` as float32 at 16 kHz (untrimmed); spoken from ``phonemes``
    (per word, as :func:`phonemize` gives them) instead where they are given."""
    _check_text(text)
    spoken = text if phonemes is None else f"[[{spell_phonemes(phonemes)}]]"
    stdout = _run_espeak(voice, "-s", str(speed), "-p", str(pitch), "--stdout", spoken)
    waveform, rate = sf.read(io.BytesIO(stdout), dtype="float64")
    # Imported here: scipy.signal takes seconds to import, and the config check imports this module.
    from scipy.signal import resample_poly

    divisor = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(waveform, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)


def trim_and_normalise(waveform: np.ndarray, gain: float) -> np.ndarray:
    """Keep at most 0.1 s of silence at each end; peak at ``PEAK * gain``."""
    peak = float(np.abs(waveform).max(initial=0.0))
    if peak == 0.0:
        raise ValueError("espeak-ng produced silence")
    sound = np.flatnonzero(np.abs(waveform) > SILENCE_LEVEL * peak)
    margin = int(SILENCE_KEPT_S * SAMPLE_RATE)
    waveform = waveform[max(sound[0] - margin, 0):sound[-1] + 1 + margin]
    return (waveform * (PEAK * gain / peak)).astype(np.float32)


def respelt_phonemes(plan: UtterancePlan, seed: int) -> list[list[str]] | None:
    """The respelt phonemes ``plan`` is spoken from, or None where it is spoken from its text."""
    if plan.phoneme_swap == 0.0 and plan.phoneme_drop == 0.0:
        return None
    rng = np.random.default_rng([seed, RESPELL_STREAM, SPLITS.index(plan.split), plan.index])
    words = swap_phonemes(phonemize(plan.text, plan.voice), plan.phoneme_swap, rng)
    # Drawn after the swaps, and only where asked: a corpus respelt by swaps alone keeps its draws.
    return drop_phonemes(words, plan.phoneme_drop, rng) if plan.phoneme_drop else words


def render_utterance(plan: UtterancePlan, phonemes: list[list[str]] | None = None) -> np.ndarray:
    """The float32 16 kHz waveform of one planned utterance (from ``phonemes`` where given)."""
    return trim_and_normalise(synthesize(plan.text, plan.voice, plan.speed, plan.pitch, phonemes), plan.gain)


def _write_utterance(job: tuple[UtterancePlan, Path, int]) -> tuple[LabelRow, list[list[str]] | None]:
    plan, media_dir, seed = job
    phonemes = respelt_phonemes(plan, seed)
    waveform = render_utterance(plan, phonemes)
    write_audio(media_dir / plan.split / f"{plan.utterance_id}.wav", waveform)
    return LabelRow(DATASET_NAME, f"{plan.split}/{plan.utterance_id}", math.ceil(waveform.size / SAMPLES_PER_FRAME),
                    "", plan.text), phonemes


def _corpus_at(root: Path) -> EspeakCorpus:
    labels = root / "labels"
    return EspeakCorpus(root, *(labels / f"{DATASET_NAME}_{split}.csv" for split in SPLITS))


def ensure_espeak_corpus(cache_dir: str | Path, config: EspeakCorpusConfig = EspeakCorpusConfig(),
                         num_workers: int = 2) -> EspeakCorpus:
    """Generate the corpus into ``cache_dir/corpus-<hash>`` once; later calls reuse it.

    ``num_workers`` processes run espeak-ng in parallel (the result does not depend on it).
    """
    version = espeak_version()

    def build(folder: Path) -> dict:
        plans = plan_corpus(config)
        jobs = [(plan, folder / DATASET_NAME, config.seed) for plan in plans]
        if num_workers > 1 and len(jobs) > 1:
            # fork: workers need no re-import; each only runs espeak-ng and writes a wav.
            with multiprocessing.get_context("fork").Pool(num_workers) as pool:
                results = pool.map(_write_utterance, jobs, chunksize=8)
        else:
            results = [_write_utterance(job) for job in jobs]
        corpus = _corpus_at(folder)
        for split, csv_path in zip(SPLITS, (corpus.train_csv, corpus.val_csv, corpus.test_csv)):
            chosen = [(plan, row, phonemes) for plan, (row, phonemes) in zip(plans, results) if plan.split == split]
            write_label_csv(csv_path, [row for _, row, _ in chosen])
            corpus.utterances_json(split).write_text(json.dumps(
                [{"id": plan.utterance_id, **asdict(plan),
                  **({} if phonemes is None else {"phonemes": spell_phonemes(phonemes)})}
                 for plan, _, phonemes in chosen], indent=1))
        return {"config": asdict(config), "generator": GENERATOR_VERSION, "espeak": version}

    return _corpus_at(build_once(cache_dir, f"corpus-{config.digest(version)}", build))
