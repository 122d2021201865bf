"""The AVSR dataset over an auto_avsr-layout corpus: robust reading, transforms, noise."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .feature_cache import FeatureCache
from .limits import SampleLimits
from .manifest import LabelRow, read_label_csv
from .media import SAMPLES_PER_FRAME, read_audio, read_video_gray
from .noise import NoiseConfig, TrainNoiseConfig, add_noise, utterance_rng
from .transforms import AugmentConfig, fit_audio, time_mask_, video_transform

MODALITIES = ("audio", "video")
SPLITS = ("train", "val", "test")
# What went wrong with which file, as recorded per sample in shared memory (code = index + 1).
PROBLEMS = [(kind, suffix) for kind in ("missing", "unreadable", "empty") for suffix in (".mp4", ".wav")]
PROBLEMS.append(("mismatched", ".wav"))


class BadSampleError(RuntimeError):
    """A sample whose media are ``kind`` = missing, unreadable, empty or mismatched, or whose label
    row the model cannot take (a kind of ``LABEL_PROBLEM_KINDS``)."""

    def __init__(self, kind: str, path: Path, detail: str = "") -> None:
        super().__init__(f"{path}: {kind}" + (f" ({detail})" if detail else ""))
        self.kind, self.path, self.detail = kind, path, detail


class TooManyBadSamplesError(RuntimeError):
    """More of a split's samples are bad than ``max_bad_fraction`` allows: a broken corpus."""


class AVSRDataset(torch.utils.data.Dataset):
    """Samples ``{"id", "text", "audio" [S], "video" [T, 88, 88]}`` with the requested modalities.

    Rows longer than ``max_frames`` frames or ``max_transcript_chars`` characters are filtered
    out at construction, as Llama-AVSR's label files. Rows the model cannot take (``limits``: an
    empty transcript, fewer frames than a compression window, a sequence beyond the LLM) are left
    out at construction too, with a warning. A sample whose media are bad makes ``__getitem__``
    warn and return None (``collate_samples`` drops it). Both are listed by ``skipped`` as (id,
    reason) in every process, DataLoader workers included (one shared byte per sample records
    media problems); ``strict=True`` raises on the first instead. When more than
    ``max_bad_fraction`` of the rows are bad, construction (or ``check_bad_share``, which the
    training loop calls) raises :class:`TooManyBadSamplesError` with the list.
    Audio is cut/padded to 640 samples per video frame (the CSV's frame count when video is
    not read). ``augment`` (train only) enables random crop, time masks and the optional flip;
    ``noise`` adds noise at an SNR, seeded per utterance so evaluation is repeatable;
    ``train_noise`` (train split only) adds noise at a random SNR, new at every epoch.
    ``feature_caches`` (modality -> :class:`FeatureCache`): those modalities come as the cached
    encoder features ``<modality>_features`` [T, D] instead of media (the caller checks that
    they are unaugmented and noise-free); an utterance missing from the cache is a bad sample.

    The random draws of training (augmentation, training noise) come from torch's global
    generator for an integer key, and for an ``(epoch, index)`` key (what a training
    ``FrameBudgetBatchSampler(epoch_in_keys=True)`` yields) from a generator seeded by
    (seed, epoch, index): the same in every process and after a resume, whatever the DataLoader
    workers drew before.
    """

    def __init__(self, root: str | Path, label_csv: str | Path, modalities=MODALITIES, split: str = "train",
                 max_frames: int | None = None, max_transcript_chars: int | None = None,
                 noise: NoiseConfig | float | None = None, strict: bool = False, seed: int = 0,
                 augment: bool | AugmentConfig = True, max_av_mismatch_frames: int = 2,
                 train_noise: TrainNoiseConfig | None = None,
                 feature_caches: Mapping[str, FeatureCache] | None = None, limits: SampleLimits = SampleLimits(),
                 max_bad_fraction: float | None = None) -> None:
        modalities = tuple(modalities)
        if not modalities or any(m not in MODALITIES for m in modalities):
            raise ValueError(f"modalities {modalities} must be a non-empty subset of {MODALITIES}")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} must be one of {SPLITS}")
        if isinstance(noise, (int, float)):
            noise = NoiseConfig(snr_db=float(noise))
        if (noise is not None or train_noise is not None) and "audio" not in modalities:
            raise ValueError("noise is added to audio, but the dataset reads no audio")
        self.root, self.modalities, self.split = Path(root), modalities, split
        self.noise, self.strict, self.seed = noise, strict, seed
        self.train_noise = train_noise if split == "train" else None
        self.max_av_mismatch_frames = max_av_mismatch_frames
        self.feature_caches = dict(feature_caches or {})
        if set(self.feature_caches) - set(modalities):
            raise ValueError(f"feature caches for {sorted(self.feature_caches)} but the dataset reads {modalities}")
        if augment is True:
            augment = AugmentConfig()
        self.augment = augment if (augment and split == "train") else None
        rows = read_label_csv(label_csv, root=self.root)
        wanted = [
            r for r in rows
            if (max_frames is None or r.n_frames <= max_frames)
            and (max_transcript_chars is None or len(r.transcript) <= max_transcript_chars)
        ]
        self.n_filtered = len(rows) - len(wanted)
        self.max_bad_fraction = max_bad_fraction
        self.rows: list[LabelRow] = []
        self.unusable: list[tuple[str, str]] = []  # (id, reason) of the rows the model cannot take
        for row in wanted:
            problems = limits.problems(row)
            if problems and strict:
                raise BadSampleError(problems[0][0], row.media_stem(self.root), problems[0][1])
            if problems:
                self.unusable.append((row.utterance_id, "; ".join(f"{kind} ({detail})" for kind, detail in problems)))
            else:
                self.rows.append(row)
        if self.unusable:
            warnings.warn(f"skipping {len(self.unusable)} of {len(wanted)} {split} samples the model cannot take "
                          f"(first: {self.unusable[0][0]}: {self.unusable[0][1]}; data.strict=true fails instead)", stacklevel=2)
        self.lengths = [r.n_frames for r in self.rows]
        # Shared memory, so that marks made in DataLoader workers are seen by the trainer.
        self._problem_codes = multiprocessing.RawArray("b", max(len(self.rows), 1))
        self.check_bad_share()

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int, generator: torch.Generator | None = None) -> dict:
        """The sample at ``index``; raises :class:`BadSampleError` (with the path) if it is bad.
        ``generator`` draws the augmentation and training noise (None: torch's global one)."""
        row = self.rows[index]
        sample = {"id": row.utterance_id, "text": row.transcript}
        n_frames = row.n_frames
        for modality, cache in self.feature_caches.items():
            if row.utterance_id not in cache:
                raise BadSampleError("missing", row.media_path(self.root, ".mp4" if modality == "video" else ".wav"),
                                     f"not in the feature cache {cache.folder} (it was bad when the cache was built)")
            sample[f"{modality}_features"] = cache.features(row.utterance_id)
        if "video" in self.modalities and "video" not in self.feature_caches:
            mp4_path = row.media_path(self.root, ".mp4")
            frames = read_media(read_video_gray, mp4_path)
            n_frames = frames.shape[0]
            try:
                sample["video"] = video_transform(torch.from_numpy(frames), self.augment, generator)
            except ValueError as error:
                raise BadSampleError("unreadable", mp4_path, str(error)) from error
        if "audio" in self.modalities and "audio" not in self.feature_caches:
            wav_path = row.media_path(self.root, ".wav")
            waveform = read_media(read_audio, wav_path)
            if n_frames == 0:
                raise BadSampleError("empty", wav_path, "the label CSV gives 0 frames")
            if "video" in self.modalities and "video" not in self.feature_caches:
                check_av_match(wav_path, waveform.shape[0], n_frames, self.max_av_mismatch_frames)
            if self.noise is not None:
                waveform = add_noise(waveform, self.noise, utterance_rng(self.seed, row.utterance_id))
            if self.train_noise is not None:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
                drawn = self.train_noise.draw(rng)
                if drawn is not None:
                    waveform = add_noise(waveform, drawn, rng)
            audio = fit_audio(torch.from_numpy(np.ascontiguousarray(waveform)), n_frames, SAMPLES_PER_FRAME)
            if self.augment is not None:
                audio = time_mask_(audio, self.augment.audio_mask_window, self.augment.audio_mask_stride, generator)
            sample["audio"] = audio
        return sample

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """The sample at index ``key`` or, for ``key = (epoch, index)``, with that epoch's draws."""
        index, generator = key, None
        if isinstance(key, tuple):
            epoch, index = key
            generator = sample_generator(self.seed, epoch, index)
        try:
            return self.load(index, generator)
        except BadSampleError as error:
            if self.strict:
                raise
            self._problem_codes[index] = PROBLEMS.index((error.kind, error.path.suffix)) + 1
            warnings.warn(f"skipping bad sample ({self.n_skipped()} so far): {error} "
                          f"(data.strict=true fails instead)", stacklevel=2)
            return None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Samples skipped so far, as (id, reason): the rows the model cannot take, then those whose
        media were bad ("<kind> <path>", in dataset order)."""
        return self.unusable + [
            (row.utterance_id, f"{PROBLEMS[code - 1][0]} {row.media_path(self.root, PROBLEMS[code - 1][1])}")
            for row, code in zip(self.rows, self._problem_codes) if code]

    def n_skipped(self, world_size: int = 1) -> int:
        """How many rows are bad. Under DDP each rank reads 1/``world_size`` of the rows and sees
        only their media problems, so those count ``world_size`` times: the split's expected share."""
        media = len(self.rows) - bytes(self._problem_codes)[: len(self.rows)].count(0)
        return len(self.unusable) + world_size * media

    def bad_share_exceeded(self, world_size: int = 1) -> bool:
        total = len(self.rows) + len(self.unusable)
        return self.max_bad_fraction is not None and self.n_skipped(world_size) > self.max_bad_fraction * total

    def check_bad_share(self, world_size: int = 1) -> None:
        """Raise :class:`TooManyBadSamplesError`, with the list, when the bad share passes ``max_bad_fraction``."""
        if self.bad_share_exceeded(world_size):
            raise TooManyBadSamplesError(self.bad_share_report(world_size))

    def bad_share_report(self, world_size: int = 1, max_listed: int = 20) -> str:
        skipped, total = self.skipped, len(self.rows) + len(self.unusable)
        listed = "".join(f"\n  {sample_id}  {reason}" for sample_id, reason in skipped[:max_listed])
        more = f"\n  ... and {len(skipped) - max_listed} more" if len(skipped) > max_listed else ""
        return (f"{self.n_skipped(world_size)} of {total} {self.split} samples are bad, more than "
                f"data.max_bad_fraction={self.max_bad_fraction:g} of them: a broken corpus, not a few bad files "
                f"(scripts/validate_data.py lists every problem):{listed}{more}")


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch generator for one sample's draws in one epoch, seeded from (seed, epoch, index)."""
    state = np.random.SeedSequence((seed, epoch, index)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def read_media(reader, path: Path) -> np.ndarray:
    """Read media with ``reader``, turning every failure into a BadSampleError naming the path."""
    if not path.is_file():
        raise BadSampleError("missing", path)
    if path.stat().st_size == 0:
        raise BadSampleError("empty", path, "0 bytes")
    try:
        data = reader(path)
    except Exception as error:  # corrupt files raise many different decoder errors
        raise BadSampleError("unreadable", path, f"{type(error).__name__}: {error}") from error
    if data.shape[0] == 0:
        raise BadSampleError("empty", path)
    return data


def check_av_match(wav_path: Path, n_samples: int, n_video_frames: int, tolerance_frames: int) -> None:
    """Raise a 'mismatched' BadSampleError when audio and video durations differ by more than the tolerance."""
    audio_frames = n_samples / SAMPLES_PER_FRAME
    if abs(audio_frames - n_video_frames) > tolerance_frames:
        raise BadSampleError("mismatched", wav_path, f"audio lasts {audio_frames:.1f} frames but the video has "
                             f"{n_video_frames}, more than {tolerance_frames} apart")
