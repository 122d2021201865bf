"""The embedded demo corpus: layout, media format, determinism, caching, and words in both streams."""

import csv
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from avsr_sinks.data.synthetic import SyntheticCorpusConfig, ensure_synthetic_corpus, plan_utterance

TINY = SyntheticCorpusConfig(n_train=3, n_val=2, n_test=2, seed=7)
HOP = 16000 // 25  # audio samples per video frame, from the formats' definitions


def read_rows(csv_path):
    with open(csv_path, newline="") as f:
        return list(csv.reader(f))


def decode(mp4_path):
    """Grayscale frames, frame rate and size as PyAV reports them."""
    with av.open(str(mp4_path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="gray") for frame in container.decode(stream)])
        return frames, float(stream.average_rate), (stream.width, stream.height)


def test_layout_csv_fields_and_media_format(tmp_path):
    corpus = ensure_synthetic_corpus(tmp_path, TINY)
    assert corpus.root.parent == tmp_path and corpus.vocabulary == TINY.vocabulary
    for split, csv_path, size in (("train", corpus.train_csv, 3), ("val", corpus.val_csv, 2), ("test", corpus.test_csv, 2)):
        assert csv_path == corpus.root / "labels" / f"synthetic_{split}.csv"
        rows = read_rows(csv_path)
        assert len(rows) == size
        for dataset, rel_path, n_frames, token_ids, transcript in rows:
            assert dataset == "synthetic" and rel_path.startswith(f"{split}/")
            ids = [int(t) for t in token_ids.split()]
            assert 2 <= len(ids) <= 5
            assert transcript == " ".join(corpus.vocabulary[i] for i in ids) == transcript.lower()
            stem = corpus.root / "synthetic" / rel_path
            frames, fps, (width, height) = decode(stem.with_suffix(".mp4"))
            assert (width, height) == (96, 96) and fps == 25.0
            assert frames.shape == (int(n_frames), 96, 96)
            audio, rate = sf.read(str(stem.with_suffix(".wav")))
            assert rate == 16000 and audio.ndim == 1 and audio.shape[0] == HOP * int(n_frames)
            # Words are 8-12 frames with 2-4 frames of silence around each.
            assert len(ids) * 8 + (len(ids) + 1) * 2 <= int(n_frames) <= len(ids) * 12 + (len(ids) + 1) * 4


def test_same_seed_gives_identical_files_whatever_the_worker_count(tmp_path):
    a = ensure_synthetic_corpus(tmp_path / "a", TINY, num_workers=2)
    b = ensure_synthetic_corpus(tmp_path / "b", TINY, num_workers=1)
    assert a.root.name == b.root.name
    files_a = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert any(p.suffix == ".wav" for p in files_a) and any(p.suffix == ".csv" for p in files_a)
    for rel in files_a:
        if rel.suffix in (".wav", ".csv", ".json"):
            assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
        elif rel.suffix == ".mp4":
            # x264 output was once seen to differ by a few pixels between two CI encodes of the same
            # frames, so the videos are compared by content: a different rendering (another face
            # texture, 3 grey levels of noise per pixel) differs by far more than 0.5 on average.
            frames_a, frames_b = decode(a.root / rel)[0], decode(b.root / rel)[0]
            assert frames_a.shape == frames_b.shape, rel
            assert np.abs(frames_a.astype(int) - frames_b).mean() < 0.5, rel
    other = ensure_synthetic_corpus(tmp_path / "a", SyntheticCorpusConfig(n_train=3, n_val=2, n_test=2, seed=8))
    assert other.root != a.root
    assert read_rows(other.train_csv) != read_rows(a.train_csv)


def test_reuse_and_interrupted_generation(tmp_path):
    untouched = tmp_path / "notes.txt"
    untouched.write_text("mine")
    first = ensure_synthetic_corpus(tmp_path, TINY)
    wav = next(first.root.rglob("*.wav"))
    stamp = wav.stat().st_mtime_ns
    assert ensure_synthetic_corpus(tmp_path, TINY).root == first.root
    assert wav.stat().st_mtime_ns == stamp  # reused, not regenerated

    # A run killed half-way leaves a partial folder of a dead process: it is cleared and redone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other_config = SyntheticCorpusConfig(n_train=2, n_val=1, n_test=1, seed=3)
    partial = tmp_path / f"corpus-{other_config.digest()}.partial-{dead.pid}"
    (partial / "synthetic").mkdir(parents=True)
    (partial / "synthetic" / "junk.wav").write_bytes(b"half")
    redone = ensure_synthetic_corpus(tmp_path, other_config)
    assert not partial.exists() and (redone.root / "COMPLETE.json").is_file()
    assert len(read_rows(redone.train_csv)) == 2
    assert untouched.read_text() == "mine"

    # A folder with the corpus's name but no marker is not ours to delete.
    foreign = tmp_path / f"corpus-{SyntheticCorpusConfig(n_train=1, n_val=1, n_test=1).digest()}"
    foreign.mkdir()
    with pytest.raises(RuntimeError, match="COMPLETE.json"):
        ensure_synthetic_corpus(tmp_path, SyntheticCorpusConfig(n_train=1, n_val=1, n_test=1))


@pytest.mark.parametrize("kwargs, key", [
    ({"vocabulary": ("red", "red")}, "vocabulary"),
    ({"vocabulary": tuple(f"w{c}" for c in "abcdefghijklm")}, "vocabulary"),
    ({"vocabulary": ("Red",)}, "vocabulary"),
    ({"n_train": -1}, "n_train"),
    ({"min_words": 3, "max_words": 2}, "min_words"),
])
def test_bad_config_names_the_field(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SyntheticCorpusConfig(**kwargs)


# --- each stream alone carries the words: nearest class-mean classifiers on held-out utterances ---

def speech_runs(audio):
    """[start, end) frame runs whose RMS stands far above the background hiss."""
    rms = np.sqrt((audio[: audio.size // HOP * HOP].reshape(-1, HOP) ** 2).mean(axis=1))
    loud = np.concatenate([[False], rms > 0.012, [False]])
    edges = np.flatnonzero(np.diff(loud.astype(int)))
    return list(zip(edges[::2], edges[1::2]))


def resample(track, n=8):
    """A per-frame feature track [T, D] linearly resampled to n time points."""
    track = np.asarray(track, dtype=float)
    positions = np.linspace(0, len(track) - 1, n)
    return np.stack([np.interp(positions, np.arange(len(track)), track[:, d]) for d in range(track.shape[1])], 1)


def audio_features(audio, start, end):
    frames = audio[start * HOP:end * HOP].reshape(-1, HOP) * np.hanning(HOP)
    spectrum = np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-3)[:, 8:200]  # 200-5000 Hz, 25 Hz bins
    return np.concatenate([part.mean(axis=0) for part in np.array_split(spectrum, 3)])


def video_features(frames, start, end):
    """Mouth geometry per frame, lighting-normalised: dark cavity width/height/area, bright teeth, mid tongue."""
    track = []
    for frame in frames[start:end].astype(float):
        frame = frame / np.median(frame)  # skin -> ~1
        dark = frame < 0.35
        teeth = frame > 1.3
        tongue = (frame > 0.7) & (frame < 0.9)
        centre = tongue[28:68, 24:72]
        track.append([dark.any(axis=0).sum(), dark.any(axis=1).sum(), dark.sum() / 50, teeth.sum() / 5,
                      centre.sum() / 5])
    return resample(track).ravel()


def nearest_mean_accuracy(train_x, train_y, test_x, test_y):
    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    scale = train_x.std(axis=0) + 1e-6
    classes = sorted(set(train_y))
    means = np.stack([train_x[np.array(train_y) == c].mean(axis=0) for c in classes]) / scale
    distances = ((test_x / scale)[:, None, :] - means[None]) ** 2
    predicted = np.array(classes)[distances.sum(axis=2).argmin(axis=1)]
    return float((predicted == np.array(test_y)).mean())


@pytest.fixture(scope="module")
def word_segments(tmp_path_factory):
    """Per-word audio and video features of a small corpus, found from the files alone."""
    config = SyntheticCorpusConfig(n_train=36, n_val=0, n_test=16, seed=11)
    corpus = ensure_synthetic_corpus(tmp_path_factory.mktemp("corpus"), config)
    segments = {}
    for split, csv_path in (("train", corpus.train_csv), ("test", corpus.test_csv)):
        rows = []
        for index, (_, rel_path, _, token_ids, _) in enumerate(read_rows(csv_path)):
            stem = corpus.root / "synthetic" / rel_path
            audio, _ = sf.read(str(stem.with_suffix(".wav")))
            frames = decode(stem.with_suffix(".mp4"))[0]
            runs = speech_runs(audio)
            ids = [int(t) for t in token_ids.split()]
            assert len(runs) == len(ids), rel_path
            # The sounds sit exactly where the generator planned the words.
            assert [tuple(map(int, r)) for r in runs] == list(plan_utterance(config, split, index).word_spans)
            rows += [(word, audio_features(audio, s, e), video_features(frames, s, e)) for word, (s, e) in zip(ids, runs)]
        segments[split] = rows
    return segments


@pytest.mark.parametrize("stream", [1, 2], ids=["audio", "video"])
def test_each_stream_alone_separates_the_words(word_segments, stream):
    train, test = word_segments["train"], word_segments["test"]
    assert len({w for w, *_ in train}) == 12 and len(test) >= 30
    accuracy = nearest_mean_accuracy([r[stream] for r in train], [r[0] for r in train],
                                     [r[stream] for r in test], [r[0] for r in test])
    assert accuracy > 0.9, accuracy
