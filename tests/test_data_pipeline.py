"""Data pipeline: both CSV formats, bad files, transforms, collate, frame-budget batches, SNR."""

import numpy as np
import pytest
import torch

from avsr_sinks.data import (AVSRDataset, BadSampleError, FrameBudgetBatchSampler, LabelRow, NoiseConfig,
                             TrainNoiseConfig, collate_samples, read_label_csv, write_label_csv)
from avsr_sinks.data.media import write_audio, write_video
from avsr_sinks.data.noise import add_noise, utterance_rng


def make_clip(root, rel, n_frames, value=128, audio_frames=None, size=96):
    stem = root / "lrs3" / rel
    write_video(stem.with_suffix(".mp4"), np.full((n_frames, size, size), value, dtype=np.uint8))
    n = 640 * (n_frames if audio_frames is None else audio_frames)
    write_audio(stem.with_suffix(".wav"), 0.5 * np.sin(np.arange(n) * 0.05))
    return LabelRow("lrs3", rel, n_frames, "1 2", "Hello World")


def test_five_field_csv_and_sample(tmp_path):
    rows = [make_clip(tmp_path, "a/1", 10, value=200), make_clip(tmp_path, "a/2", 7, audio_frames=8)]
    write_label_csv(tmp_path / "l.csv", rows)
    ds = AVSRDataset(tmp_path, tmp_path / "l.csv", split="test")
    s = ds[0]
    assert s["id"] == "lrs3/a/1" and s["text"] == "hello world"
    assert s["video"].shape == (10, 88, 88) and s["audio"].shape == (6400,)
    expected = (200 / 255 - 0.421) / 0.165  # hand computation of the normalisation
    assert torch.allclose(s["video"], torch.full_like(s["video"], expected), atol=0.05)
    assert ds[1]["audio"].shape == (7 * 640,)  # 8 frames of audio cut to the 7 video frames
    assert ds.lengths == [10, 7]


def test_four_field_csv_reads_auto_avsr_text(tmp_path):
    rel = "lrs3_video_seg24s/test/spk/00001"
    make_clip(tmp_path, rel, 5)
    text = tmp_path / "lrs3" / "lrs3_text_seg24s/test/spk/00001.txt"
    text.parent.mkdir(parents=True)
    text.write_text("THE CAT  SAT\n")
    (tmp_path / "l.csv").write_text(f"lrs3,{rel}.mp4,5,3 4 5\n")
    [row] = read_label_csv(tmp_path / "l.csv", root=tmp_path)
    assert row.transcript == "the cat sat" and row.rel_path == rel
    ds = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="val")
    assert set(ds[0]) == {"id", "text", "audio"} and ds[0]["audio"].shape == (3200,)


@pytest.mark.parametrize("line,message", [("a,b,c\n", "expected 4 fields"), ("a,b,x,1,t\n", "not an integer"),
                                          ("lrs3,x,3,1\n", "text file")])
def test_bad_csv_names_file_and_line(tmp_path, line, message):
    (tmp_path / "l.csv").write_text("lrs3,ok,3,1,fine\n" + line)
    with pytest.raises(ValueError, match=rf"l\.csv:2.*{message}"):
        read_label_csv(tmp_path / "l.csv", root=tmp_path)


def test_filters_and_audio_only_length(tmp_path):
    rows = [LabelRow("lrs3", "x", 30, "1", "short"), LabelRow("lrs3", "y", 80, "1", "short"),
            LabelRow("lrs3", "z", 10, "1", "a much longer transcript")]
    write_audio(tmp_path / "lrs3" / "x.wav", np.ones(1000) * 0.1)
    write_label_csv(tmp_path / "l.csv", rows)
    ds = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), max_frames=50, max_transcript_chars=10,
                     split="test")
    assert len(ds) == 1 and ds.n_filtered == 2
    audio = ds[0]["audio"]
    assert audio.shape == (30 * 640,) and torch.all(audio[1000:] == 0)  # padded to the CSV length


def test_bad_samples_skipped_counted_and_strict(tmp_path):
    good = make_clip(tmp_path, "good", 6)
    missing = LabelRow("lrs3", "missing", 6, "1", "x")
    empty = make_clip(tmp_path, "empty", 6)
    (tmp_path / "lrs3" / "empty.mp4").write_bytes(b"")
    corrupt = make_clip(tmp_path, "corrupt", 6)
    (tmp_path / "lrs3" / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    mismatch = make_clip(tmp_path, "mismatch", 6, audio_frames=20)
    write_label_csv(tmp_path / "l.csv", [good, missing, empty, corrupt, mismatch])
    ds = AVSRDataset(tmp_path, tmp_path / "l.csv", split="test")
    with pytest.warns(UserWarning, match="skipping bad sample") as caught:
        items = [ds[i] for i in range(len(ds))]
    assert "audio lasts 20.0 frames but the video has 6" in str(caught[-1].message)
    assert items[0] is not None and items[1:] == [None] * 4
    assert [sid for sid, _ in ds.skipped] == ["lrs3/missing", "lrs3/empty", "lrs3/corrupt", "lrs3/mismatch"]
    reasons = [r for _, r in ds.skipped]
    assert "missing" in reasons[0] and "empty" in reasons[1] and "unreadable" in reasons[2] and "mismatched" in reasons[3]
    assert reasons[2].endswith("corrupt.wav") and reasons[0].endswith("missing.mp4")
    batch = collate_samples(items)
    assert batch["ids"] == ["lrs3/good"] and batch["video"].shape == (1, 6, 88, 88)
    strict = AVSRDataset(tmp_path, tmp_path / "l.csv", split="test", strict=True)
    with pytest.raises(BadSampleError, match="missing.mp4"):
        strict[1]


def test_train_augmentation_random_and_eval_deterministic(tmp_path):
    stem = tmp_path / "lrs3" / "r"
    rng = np.random.default_rng(0)
    write_video(stem.with_suffix(".mp4"), rng.integers(0, 255, (50, 96, 96), dtype=np.uint8))
    write_audio(stem.with_suffix(".wav"), rng.uniform(-0.5, 0.5, 50 * 640))
    write_label_csv(tmp_path / "l.csv", [LabelRow("lrs3", "r", 50, "1", "t")])
    val = AVSRDataset(tmp_path, tmp_path / "l.csv", split="val")
    assert torch.equal(val[0]["video"], val[0]["video"])
    torch.manual_seed(0)
    train = AVSRDataset(tmp_path, tmp_path / "l.csv", split="train")
    a, b = train[0], train[0]
    assert not torch.equal(a["video"], b["video"])
    # 50 frames -> 2 masks of <= 10 frames; 32000 samples -> 2 masks of <= 6400 samples
    zero_frames = (a["video"] == (0 - 0.421) / 0.165).flatten(1).all(1).sum()
    assert zero_frames <= 20 and (a["audio"] == 0).sum() <= 2 * 6400 + 50


def test_collate_pads_at_end():
    samples = [{"id": "a", "text": "x", "audio": torch.ones(3)}, None, {"id": "b", "text": "y", "audio": torch.ones(5)}]
    batch = collate_samples(samples)
    assert batch["audio"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["audio_lengths"].tolist() == [3, 5] and "video" not in batch


def epoch_batches(lengths, max_frames, replicas, epoch, shuffle=True):
    per_rank = []
    for rank in range(replicas):
        sampler = FrameBudgetBatchSampler(lengths, max_frames, shuffle=shuffle, seed=3, num_replicas=replicas, rank=rank)
        sampler.set_epoch(epoch)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler)
    return per_rank


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_frame_budget_batches_cover_every_sample_once(replicas):
    lengths = np.random.default_rng(1).integers(5, 100, 101).tolist()
    for epoch in range(3):
        per_rank = epoch_batches(lengths, 300, replicas, epoch)
        assert len({len(b) for b in per_rank}) == 1  # same number of batches on every rank
        flat = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(flat) == list(range(len(lengths)))  # no sample lost or duplicated
        for batches in per_rank:
            for batch in batches:
                assert len(batch) * max(lengths[i] for i in batch) <= 300
    assert epoch_batches(lengths, 300, 1, 0) != epoch_batches(lengths, 300, 1, 1)  # reshuffled per epoch
    assert epoch_batches(lengths, 300, 1, 2) == epoch_batches(lengths, 300, 1, 2)  # seeded


def test_sampler_fewer_samples_than_ranks_repeats_and_dataloader(tmp_path):
    per_rank = epoch_batches([4], 10, 2, 0)
    assert per_rank == [[[0]], [[0]]]  # one sample, two ranks: the only documented repeat
    data = torch.arange(7)
    loader = torch.utils.data.DataLoader(data, batch_sampler=FrameBudgetBatchSampler([2] * 7, 6, shuffle=False))
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="max_frames_per_sample"):
        FrameBudgetBatchSampler([3, 20], 10)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
@pytest.mark.parametrize("kind", ["white", "babble", "file"])
def test_noise_at_snr(tmp_path, snr, kind):
    rng = np.random.default_rng(7)
    clean = (0.3 * np.sin(np.arange(16000) * 0.02) * rng.uniform(0.5, 1, 16000)).astype(np.float32)
    if kind == "file":
        write_audio(tmp_path / "n.wav", rng.uniform(-0.4, 0.4, 5000))  # shorter: must loop
        config = NoiseConfig(snr, noise_file=str(tmp_path / "n.wav"))
    else:
        config = NoiseConfig(snr, kind=kind)
    noisy = add_noise(clean, config, utterance_rng(0, "utt"))
    residual = noisy.astype(np.float64) - clean
    measured = 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(residual**2))
    assert abs(measured - snr) < 0.1
    assert np.array_equal(noisy, add_noise(clean, config, utterance_rng(0, "utt")))  # per-utterance seed


def test_noise_option_on_dataset(tmp_path):
    write_label_csv(tmp_path / "l.csv", [make_clip(tmp_path, "n", 10)])
    clean = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="test")[0]["audio"]
    noisy = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="test", noise=5.0)[0]["audio"]
    measured = 10 * np.log10((clean.double() ** 2).sum() / ((noisy.double() - clean.double()) ** 2).sum())
    assert abs(float(measured) - 5.0) < 0.1


def measured_snr(clean, noisy):
    return float(10 * np.log10((clean.double() ** 2).sum() / ((noisy.double() - clean.double()) ** 2).sum()))


def test_train_noise_draws_a_listed_snr_per_sample_train_split_only(tmp_path):
    write_label_csv(tmp_path / "l.csv", [make_clip(tmp_path, "n", 10)])
    clean = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="test")[0]["audio"]
    listed = TrainNoiseConfig(snr_db=(-5, 10, None), kind="white")
    train = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="train", augment=False,
                        train_noise=listed)
    torch.manual_seed(0)
    draws = [train[0]["audio"] for _ in range(30)]
    seen = {"clean" if torch.equal(d, clean) else round(measured_snr(clean, d), 1) for d in draws}
    assert seen == {"clean", -5.0, 10.0}  # every listed SNR, exactly, and nothing else
    torch.manual_seed(0)
    assert all(torch.equal(a, train[0]["audio"]) for a in draws)  # torch's seed fixes the draws
    test = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="test", train_noise=listed)
    assert torch.equal(test[0]["audio"], clean)  # evaluation splits stay clean


def test_train_noise_config_errors():
    with pytest.raises(ValueError, match="snr_db is empty"):
        TrainNoiseConfig(snr_db=())
    with pytest.raises(ValueError, match="noise kind 'pink'"):
        TrainNoiseConfig(kind="pink")
    assert TrainNoiseConfig.from_settings(None) is None and TrainNoiseConfig.from_settings({"snr_db": None}) is None
    assert TrainNoiseConfig.from_settings({"snr_db": [0, None]}).snr_db == (0.0, None)


def test_read_video_gray_recovers_full_range_values(tmp_path):
    from avsr_sinks.data.media import read_video_gray
    levels = np.array([0, 16, 50, 128, 235, 255], dtype=np.uint8)
    frames = np.broadcast_to(levels[:, None, None], (6, 32, 32)).copy()
    write_video(tmp_path / "v.mp4", frames)
    decoded = read_video_gray(tmp_path / "v.mp4")
    assert decoded.shape == (6, 32, 32) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames).max() <= 2  # H.264 at crf 10 is near-lossless


def test_dataloader_workers_report_skipped_samples(tmp_path):
    rows = [make_clip(tmp_path, f"c{i}", 4 + i) for i in range(5)] + [LabelRow("lrs3", "lost", 5, "1", "x")]
    write_label_csv(tmp_path / "l.csv", rows)
    ds = AVSRDataset(tmp_path, tmp_path / "l.csv", split="val")
    sampler = FrameBudgetBatchSampler(ds.lengths, max_frames=20, shuffle=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_samples, num_workers=2)
    ids = [i for batch in loader for i in batch["ids"]]  # the warning goes to the worker's stderr
    assert sorted(ids) == sorted(f"lrs3/c{i}" for i in range(5))
    assert ds.skipped == [("lrs3/lost", f"missing {tmp_path / 'lrs3' / 'lost.mp4'}")]


def test_dotted_names_and_zero_frame_rows(tmp_path):
    write_audio(tmp_path / "lrs3" / "clip.v2.wav", np.full(640 * 3, 0.2))
    write_audio(tmp_path / "lrs3" / "zero.wav", np.full(640, 0.2))
    write_label_csv(tmp_path / "l.csv", [LabelRow("lrs3", "clip.v2", 3, "1", "a"), LabelRow("lrs3", "zero", 0, "1", "b")])
    with pytest.warns(UserWarning, match="0 frames"):  # shorter than any compression window: left out at once
        ds = AVSRDataset(tmp_path, tmp_path / "l.csv", modalities=("audio",), split="test")
    assert len(ds) == 1 and ds[0]["audio"].shape == (1920,)
    assert [(sample_id, reason.split()[0]) for sample_id, reason in ds.skipped] == [("lrs3/zero", "too_short")]
