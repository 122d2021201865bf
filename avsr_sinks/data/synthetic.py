"""The embedded demo corpus: synthetic audio-visual "speech" that tiny models learn in minutes.

Every word of a small vocabulary is said with a sound and a mouth animation of its own, so
ASR (audio only), VSR (video only) and AVSR can all learn, and video can rescue noisy audio.

Word k (its index in the vocabulary) is built from three properties shared by both streams
or owned by one:

- syllables ``k % 3 + 1``: the mouth opens that many times, and the loudness rises and falls
  with it (audio and video agree, as in real speech);
- audio: two formant-like tones gliding in log-frequency, a pair unique to the word (a grid of
  3 low x 4 high start frequencies, rising or falling), loud while the mouth is open;
- video: a mouth shape from ``k // 3`` (wide "ah", flat wide slit, small rounded "oo", tall
  oval) with what shows inside it from ``k % 3`` (nothing, teeth, tongue): dark cavity inside
  lips on a skin background, 96x96 grayscale.

So the words differ in both streams: audio alone separates all words by their formants, video
alone by shape x inside (any open frame shows which word it is) and by the opening count. A
word's look must not hinge on counting 3 openings in 5 frames: at 25 fps and the video rate of
a compressor that is below what a tiny CNN resolves, and VSR would not learn. Per utterance there is random variation so nothing is memorised
exactly: word durations 8-12 video frames (speed), silences of 2-4 frames, pitch jitter per
word, gain, background hiss; mouth position jitter of a few pixels (the learner sees random
88x88 crops), brightness, skin texture. The mouth is large and centred: the learner is a tiny CNN.

Audio is exactly 640 samples (16 kHz) per video frame (25 fps). The corpus is laid out like
auto_avsr's LRS3: ``root/synthetic/<split>/<utt>.mp4`` with the ``.wav`` beside it, and 5-field
label CSVs ``root/labels/synthetic_<split>.csv`` (token ids are word indices).

Generation is deterministic (each utterance has its own seeded generator, so the result does not
depend on the worker count), goes into a folder named by a hash of the config and of
``GENERATOR_VERSION``, is built under a temporary name with a completion marker written last,
then renamed into place: an interrupted run leaves no half corpus that could be reused.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .corpus_cache import build_once
from .manifest import LabelRow, write_label_csv
from .media import SAMPLE_RATE, SAMPLES_PER_FRAME, write_audio, write_video

# Bump when the rendering changes: a new version generates into a new folder.
GENERATOR_VERSION = 2
DATASET_NAME = "synthetic"
SPLITS = ("train", "val", "test")

# Ordered so that each word's real syllable count is k % 3 + 1, as the animation says.
DEFAULT_VOCABULARY = ("red", "yellow", "banana", "blue", "purple", "tomato",
                      "green", "open", "computer", "stop", "seven", "elephant")

# Formant start frequencies (Hz): word k uses low LOW_FORMANTS[k % 3] and high HIGH_FORMANTS[k // 3].
LOW_FORMANTS = (300.0, 500.0, 780.0)
HIGH_FORMANTS = (1000.0, 1500.0, 2200.0, 3200.0)
GLIDE = 1.35  # end/start frequency ratio of a rising glide (falling: the inverse)

# Mouth shapes: (half-width, half-opening at full opening), in pixels of a 96 image.
MOUTH_SHAPES = ((26.0, 20.0),   # wide open "ah"
                (32.0, 9.0),    # flat wide slit "ee"
                (13.0, 13.0),   # small rounded "oo"
                (17.0, 22.0))   # tall oval "aw"
INSIDES = ("nothing", "teeth", "tongue")  # what shows inside the cavity, from k % 3
MAX_VOCABULARY = len(MOUTH_SHAPES) * len(INSIDES)
REST_SHAPE = (24.0, 10.0)  # the neutral mouth between words (nothing inside)
REST_OPENING = 0.12  # fraction of full opening with the lips at rest
LIPS_LEVEL, CAVITY_LEVEL, TEETH_LEVEL, TONGUE_LEVEL = 95.0, 25.0, 225.0, 120.0  # gray levels; skin ~150


@dataclass(frozen=True)
class SyntheticCorpusConfig:
    """What the corpus holds; every field changes the cache folder's hash."""

    vocabulary: tuple[str, ...] = DEFAULT_VOCABULARY
    n_train: int = 1500
    n_val: int = 100
    n_test: int = 200
    seed: int = 0
    image_size: int = 96
    min_words: int = 2
    max_words: int = 5
    min_word_frames: int = 8
    max_word_frames: int = 12
    min_gap_frames: int = 2
    max_gap_frames: int = 4

    def __post_init__(self) -> None:
        where = "SyntheticCorpusConfig"
        words = tuple(self.vocabulary)
        object.__setattr__(self, "vocabulary", words)
        if not 1 <= len(words) <= MAX_VOCABULARY:
            raise ValueError(f"{where}.vocabulary: give 1 to {MAX_VOCABULARY} words (one sound and mouth "
                             f"pattern each), got {len(words)}")
        if len(set(words)) != len(words):
            raise ValueError(f"{where}.vocabulary: words must be unique, got {words}")
        for word in words:
            if not word or word != word.lower() or not word.isalpha():
                raise ValueError(f"{where}.vocabulary: {word!r} is not a lowercase alphabetic word")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{where}.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size < 64:
            raise ValueError(f"{where}.image_size must be >= 64 (88x88 crops are taken from 96), got {self.image_size}")
        for low, high in (("min_words", "max_words"), ("min_word_frames", "max_word_frames"),
                          ("min_gap_frames", "max_gap_frames")):
            if not 1 <= getattr(self, low) <= getattr(self, high):
                raise ValueError(f"{where}.{low}/{high}: need 1 <= {low} <= {high}, "
                                 f"got {getattr(self, low)} and {getattr(self, high)}")

    def split_size(self, split: str) -> int:
        """Number of utterances in ``split``."""
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]

    def digest(self) -> str:
        """Hash of the config and the generator version: the name of the cache folder."""
        text = json.dumps({"config": asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SyntheticCorpus:
    """A generated corpus: media under ``root/synthetic``, label CSVs under ``root/labels``."""

    root: Path
    train_csv: Path
    val_csv: Path
    test_csv: Path
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class UtterancePlan:
    """Words of an utterance and where each is said: [start, end) in video frames."""

    utterance_id: str
    word_ids: tuple[int, ...]
    word_spans: tuple[tuple[int, int], ...]
    n_frames: int


def utterance_rng(config: SyntheticCorpusConfig, split: str, index: int) -> np.random.Generator:
    """The generator of one utterance: fixed by (seed, split, index), whatever the worker count."""
    return np.random.default_rng([config.seed, SPLITS.index(split), index])


def plan_utterance(config: SyntheticCorpusConfig, split: str, index: int,
                   rng: np.random.Generator | None = None) -> UtterancePlan:
    """Draw the words, durations and silences of utterance ``index`` of ``split``."""
    rng = utterance_rng(config, split, index) if rng is None else rng
    n_words = int(rng.integers(config.min_words, config.max_words + 1))
    word_ids = tuple(int(w) for w in rng.integers(0, len(config.vocabulary), n_words))
    t = int(rng.integers(config.min_gap_frames, config.max_gap_frames + 1))  # leading silence
    spans = []
    for _ in word_ids:
        length = int(rng.integers(config.min_word_frames, config.max_word_frames + 1))
        spans.append((t, t + length))
        t += length + int(rng.integers(config.min_gap_frames, config.max_gap_frames + 1))
    return UtterancePlan(f"{split}_{index:05d}", word_ids, tuple(spans), t)


def syllable_envelope(word_id: int, n: int) -> np.ndarray:
    """Opening/loudness in [0, 1] over ``n`` samples: ``k % 3 + 1`` bumps, zero at the word's edges."""
    phase = (np.arange(n) + 0.5) / n
    return np.abs(np.sin(np.pi * (word_id % 3 + 1) * phase))


def render_audio(plan: UtterancePlan, rng: np.random.Generator) -> np.ndarray:
    """Float32 waveform of the plan, 640 samples per video frame, peak below 1."""
    waveform = np.zeros(plan.n_frames * SAMPLES_PER_FRAME)
    for word_id, (start, end) in zip(plan.word_ids, plan.word_spans):
        n = (end - start) * SAMPLES_PER_FRAME
        jitter = rng.uniform(0.96, 1.04)
        glide = GLIDE if word_id % 2 == 0 else 1.0 / GLIDE
        progress = np.arange(n) / n
        word = np.zeros(n)
        for f_start, weight in ((LOW_FORMANTS[word_id % 3], 1.0), (HIGH_FORMANTS[word_id // 3], 0.6)):
            frequency = jitter * f_start * glide ** progress
            word += weight * np.sin(2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi))
        # Loud while the mouth is open, never fully silent inside the word.
        envelope = np.sqrt(np.sin(np.pi * (np.arange(n) + 0.5) / n)) * (0.35 + 0.65 * syllable_envelope(word_id, n))
        waveform[start * SAMPLES_PER_FRAME:end * SAMPLES_PER_FRAME] = word * envelope
    waveform *= rng.uniform(0.3, 0.55)
    waveform += rng.uniform(0.001, 0.004) * rng.standard_normal(waveform.size)
    return np.clip(waveform, -0.99, 0.99).astype(np.float32)


def mouth_opening(plan: UtterancePlan) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the opening (fraction of the shape's full opening) and the word said (-1 at rest)."""
    opening = np.full(plan.n_frames, REST_OPENING)
    word = np.full(plan.n_frames, -1)
    for word_id, (start, end) in zip(plan.word_ids, plan.word_spans):
        opening[start:end] = REST_OPENING + (1 - REST_OPENING) * syllable_envelope(word_id, end - start)
        word[start:end] = word_id
    return opening, word


def _fill_ellipse(image: np.ndarray, centre: np.ndarray, half_axes: tuple[float, float], value: float) -> None:
    """Filled axis-aligned ellipse with sub-pixel centre and axes (OpenCV, 4 fractional bits)."""
    cx, cy = (int(round(c * 16)) for c in centre)
    axes = tuple(max(int(round(h * 16)), 16) for h in half_axes)
    cv2.ellipse(image, (cx, cy), axes, 0, 0, 360, value, thickness=-1, lineType=cv2.LINE_8, shift=4)


def render_video(config: SyntheticCorpusConfig, plan: UtterancePlan, rng: np.random.Generator) -> np.ndarray:
    """Uint8 grayscale frames [T, S, S]: dark mouth cavity in lips on skin, animated per word."""
    size = config.image_size
    scale = size / 96.0
    opening, word = mouth_opening(plan)
    centre = size / 2 + rng.uniform(-3, 3, 2) * scale
    wobble = rng.uniform(-0.5, 0.5, plan.n_frames)
    # Skin: soft vertical shading plus a per-utterance texture (a different "face" each time).
    skin = np.linspace(140, 160, size, dtype=np.float32)[:, None] + 3.0 * rng.standard_normal((size, size), dtype=np.float32)
    frames = np.empty((plan.n_frames, size, size), dtype=np.float32)
    for t in range(plan.n_frames):
        half_width, full_opening = MOUTH_SHAPES[word[t] // 3] if word[t] >= 0 else REST_SHAPE
        inside = INSIDES[word[t] % 3] if word[t] >= 0 else "nothing"
        a = half_width * scale + wobble[t]
        b = max(full_opening * opening[t], 1.0) * scale
        image = frames[t]
        image[:] = skin
        _fill_ellipse(image, centre, (a + 5 * scale, b + 5 * scale), LIPS_LEVEL)
        _fill_ellipse(image, centre, (a, b), CAVITY_LEVEL)
        # Teeth (top) and tongue (bottom) are half-size copies of the cavity touching its edge: inside it.
        if inside == "teeth":
            _fill_ellipse(image, centre - (0.0, 0.5 * b), (0.5 * a, 0.5 * b), TEETH_LEVEL)
        if inside == "tongue":
            _fill_ellipse(image, centre + (0.0, 0.5 * b), (0.5 * a, 0.5 * b), TONGUE_LEVEL)
    frames *= rng.uniform(0.85, 1.15)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_utterance(config: SyntheticCorpusConfig, split: str, index: int
                     ) -> tuple[UtterancePlan, np.ndarray, np.ndarray]:
    """Plan, video frames [T, S, S] uint8 and waveform [640 T] float32 of one utterance."""
    rng = utterance_rng(config, split, index)
    plan = plan_utterance(config, split, index, rng)
    return plan, render_video(config, plan, rng), render_audio(plan, rng)


def _write_utterance(job: tuple[SyntheticCorpusConfig, Path, str, int]) -> LabelRow:
    config, media_dir, split, index = job
    plan, frames, waveform = render_utterance(config, split, index)
    stem = media_dir / split / plan.utterance_id
    write_video(stem.with_suffix(".mp4"), frames)
    write_audio(stem.with_suffix(".wav"), waveform)
    return LabelRow(DATASET_NAME, f"{split}/{plan.utterance_id}", plan.n_frames,
                    " ".join(str(w) for w in plan.word_ids),
                    " ".join(config.vocabulary[w] for w in plan.word_ids))


def _corpus_at(root: Path, config: SyntheticCorpusConfig) -> SyntheticCorpus:
    labels = root / "labels"
    return SyntheticCorpus(root, *(labels / f"{DATASET_NAME}_{split}.csv" for split in SPLITS), config.vocabulary)


def ensure_synthetic_corpus(cache_dir: str | Path, config: SyntheticCorpusConfig = SyntheticCorpusConfig(),
                            num_workers: int = 2) -> SyntheticCorpus:
    """Generate the corpus into ``cache_dir/corpus-<hash>`` once (atomically, see
    :func:`~avsr_sinks.data.corpus_cache.build_once`); later calls reuse it. ``num_workers``
    processes render in parallel (the result does not depend on it).
    """
    def build(folder: Path) -> dict:
        jobs = [(config, folder / DATASET_NAME, split, i) for split in SPLITS for i in range(config.split_size(split))]
        if num_workers > 1 and len(jobs) > 1:
            # fork: workers need no re-import, and they touch neither torch nor threads.
            with multiprocessing.get_context("fork").Pool(num_workers) as pool:
                rows = pool.map(_write_utterance, jobs, chunksize=16)
        else:
            rows = [_write_utterance(job) for job in jobs]
        corpus = _corpus_at(folder, config)
        for split, csv_path in zip(SPLITS, (corpus.train_csv, corpus.val_csv, corpus.test_csv)):
            write_label_csv(csv_path, [row for row in rows if row.rel_path.startswith(f"{split}/")])
        return {"config": asdict(config), "generator": GENERATOR_VERSION}

    return _corpus_at(build_once(cache_dir, f"corpus-{config.digest()}", build), config)
