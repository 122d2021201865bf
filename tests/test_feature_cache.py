"""Encoder feature cache: equal to the live encoder, refused when built by another, resumable,
and a training step from it gives the live step's loss."""

import json

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import WhisperConfig

from avsr_sinks.data import AVSRDataset, FrameBudgetBatchSampler, collate_samples
from avsr_sinks.data.feature_cache import FeatureCache, FeatureCacheError, encoder_fingerprint
from avsr_sinks.data.synthetic import SyntheticCorpusConfig, ensure_synthetic_corpus
from avsr_sinks.encoders import AVHubertEncoder, WhisperEncoder
from avsr_sinks.encoders.avhubert import AVHubertConfig
from avsr_sinks.model.avsr import LlamaAVSR
from avsr_sinks.training.feature_caches import cache_off_reason, prepare_feature_caches

# fp16 storage: |x| of these tiny encoders' outputs is O(1), so half precision keeps ~1e-3.
FP16 = {"atol": 2e-3, "rtol": 2e-3}
DATA = {"max_frames_per_sample": None, "max_transcript_chars": None, "strict": False, "augment": False,
        "eval_max_frames": 200, "num_workers": 0, "train_noise": None}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    c = ensure_synthetic_corpus(tmp_path_factory.mktemp("synthetic"),
                                SyntheticCorpusConfig(n_train=6, n_val=3, n_test=3, max_words=2))
    return {"root": c.root, "train_csv": c.train_csv, "val_csv": c.val_csv, "test_csv": c.test_csv}


def _video_encoder(seed=0):
    torch.manual_seed(seed)
    config = AVHubertConfig(layers=1, dim=16, heads=2, ffn_dim=32, resnet_widths=(2, 2, 4, 4), conv_pos=8,
                            conv_pos_groups=4)
    encoder = AVHubertEncoder(config, modality="video", trainable=False)
    encoder.requires_grad_(False)
    return encoder.eval()


def _model(encoders, tiny_llm, task="asr", compression=(2,)):
    llm, tok, special = tiny_llm
    return LlamaAVSR(llm, tok, special, task, list(compression), audio_encoder=encoders.get("audio"),
                     video_encoder=encoders.get("video")).eval()


def _cfg(cache_dir, **data):
    return {"data": {**DATA, "feature_cache": str(cache_dir), **data}, "trainer": {"accelerator": "cpu"}}


def _alone(encoder, modality, sample):
    x = sample[modality][None]
    features, lengths = encoder(**{modality: x, f"{modality}_lengths": torch.tensor([x.shape[1]])})
    return features[0, : int(lengths[0])]


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_whisper_cache_equals_live_encoder_on_each_utterance(tmp_path, corpus, tiny_whisper_dir, tiny_llm, pad_to_30s):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=pad_to_30s)
    model = _model({"audio": encoder}, tiny_llm)
    caches = prepare_feature_caches(_cfg(tmp_path), model, corpus, ("train", "val", "test"), log=lambda _: None)
    assert set(caches) == {"train", "val", "test"}
    for split in ("train", "test"):
        live = AVSRDataset(corpus["root"], corpus[f"{split}_csv"], modalities=("audio",), split=split, augment=False)
        cached = AVSRDataset(corpus["root"], corpus[f"{split}_csv"], modalities=("audio",), split=split,
                             augment=False, feature_caches=caches[split])
        for i in range(len(live)):
            expected = _alone(encoder, "audio", live[i])
            got = cached[i]["audio_features"]
            assert got.dtype == torch.float16 and "audio" not in cached[i]
            torch.testing.assert_close(got.float(), expected, **FP16)


def test_avhubert_video_cache_equals_live_encoder(tmp_path, corpus, tiny_llm):
    encoder = _video_encoder()
    model = _model({"video": encoder}, tiny_llm, task="vsr")
    caches = prepare_feature_caches(_cfg(tmp_path), model, corpus, ("test",), log=lambda _: None)
    live = AVSRDataset(corpus["root"], corpus["test_csv"], modalities=("video",), split="test", augment=False)
    cached = AVSRDataset(corpus["root"], corpus["test_csv"], modalities=("video",), split="test", augment=False,
                         feature_caches=caches["test"])
    for i in range(len(live)):
        torch.testing.assert_close(cached[i]["video_features"].float(), _alone(encoder, "video", live[i]), **FP16)


def _first_batch(dataset):
    sampler = FrameBudgetBatchSampler(dataset.lengths, 400, shuffle=False, num_replicas=1, rank=0)
    return next(iter(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_samples)))


def test_training_step_from_the_cache_gives_the_live_loss(tmp_path, corpus, tiny_whisper_dir, tiny_llm):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    model = _model({"audio": encoder}, tiny_llm).train()
    caches = prepare_feature_caches(_cfg(tmp_path), model, corpus, ("train",), log=lambda _: None)
    live_set = AVSRDataset(corpus["root"], corpus["train_csv"], modalities=("audio",), augment=False)
    cached_set = AVSRDataset(corpus["root"], corpus["train_csv"], modalities=("audio",), augment=False,
                             feature_caches=caches["train"])
    live, cached = _first_batch(live_set), _first_batch(cached_set)
    assert live["ids"] == cached["ids"] and len(live["ids"]) > 1
    model.llm.eval()  # no LoRA dropout: the two forwards must see the same network
    # The LLM's inputs are the same (to fp16 storage), and so is the loss.
    live_inputs, cached_inputs = model.assemble(live), model.assemble(cached)
    torch.testing.assert_close(cached_inputs.inputs_embeds, live_inputs.inputs_embeds, **FP16)
    assert torch.equal(cached_inputs.labels, live_inputs.labels)
    assert torch.isclose(model(cached).loss, model(live).loss, rtol=1e-4)
    # Sensitive to the features: rolled by one utterance, the inputs are far apart.
    swapped = dict(cached, audio_features=cached["audio_features"].roll(1, dims=0),
                   audio_feature_lengths=cached["audio_feature_lengths"].roll(1))
    differs = (model.assemble(swapped).inputs_embeds - live_inputs.inputs_embeds).abs().max()
    assert differs > 100 * FP16["atol"]


def test_cache_of_another_encoder_is_refused_never_used(tmp_path, corpus, tiny_whisper_dir, tiny_llm):
    first = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    caches = prepare_feature_caches(_cfg(tmp_path), _model({"audio": first}, tiny_llm), corpus, ("test",),
                                    log=lambda _: None)
    built = caches["test"]["audio"].folder
    other = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    with torch.no_grad():
        other.encoder.layers[0].fc1.weight[0, 0] += 1e-3  # one weight differs
    # Given the parent folder: its own subfolder, built anew.
    logs = []
    mine = prepare_feature_caches(_cfg(tmp_path), _model({"audio": other}, tiny_llm), corpus, ("test",),
                                  log=logs.append)["test"]["audio"]
    assert mine.folder != built and any("encoding" in line for line in logs)
    # Given the first encoder's folder itself: refused.
    with pytest.raises(FeatureCacheError, match="another encoder"):
        prepare_feature_caches(_cfg(built), _model({"audio": other}, tiny_llm), corpus, ("test",), log=lambda _: None)
    # Another mode (pad_to_30s) is another preprocessing of the same weights.
    thirty = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=True)
    assert encoder_fingerprint(thirty, {})[0] != encoder_fingerprint(first, {})[0]


def test_interrupted_build_resumes_after_its_whole_shards(tmp_path, corpus, tiny_whisper_dir, tiny_llm, monkeypatch):
    import avsr_sinks.data.feature_cache as feature_cache

    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    model = _model({"audio": encoder}, tiny_llm)
    monkeypatch.setattr(feature_cache, "SHARD_UTTERANCES", 1)
    calls = []
    original = encoder.forward

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while encoding the third batch
        return original(*args, **kwargs)

    monkeypatch.setattr(encoder, "forward", dying)
    with pytest.raises(KeyboardInterrupt):  # a budget of one utterance a batch
        prepare_feature_caches(_cfg(tmp_path, eval_max_frames=40), model, corpus, ("train",), log=lambda _: None)
    folder = next(tmp_path.glob("audio-*"))
    assert not json.loads((folder / "meta.json").read_text())["complete"]
    partial = FeatureCache(folder, json.loads((folder / "meta.json").read_text()))
    assert 0 < len(partial) < 6
    monkeypatch.setattr(encoder, "forward", original)
    logs = []
    cache = prepare_feature_caches(_cfg(tmp_path, eval_max_frames=40), model, corpus, ("train",),
                                   log=logs.append)["train"]["audio"]
    assert len(cache) == 6 and f"encoding {6 - len(partial)} of 6" in logs[0]
    dataset = AVSRDataset(corpus["root"], corpus["train_csv"], modalities=("audio",), augment=False)
    for i in range(len(dataset)):
        torch.testing.assert_close(cache.features(dataset.rows[i].utterance_id).float(),
                                   _alone(encoder, "audio", dataset[i]), **FP16)


def test_cache_is_off_where_it_would_differ_from_the_live_encoder(tiny_whisper_dir, tiny_llm):
    frozen = _model({"audio": WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)}, tiny_llm)
    assert cache_off_reason(DATA, "train", "audio", frozen) is None
    assert "data.augment" in cache_off_reason({**DATA, "augment": True}, "train", "audio", frozen)
    assert cache_off_reason({**DATA, "augment": True}, "val", "audio", frozen) is None  # eval is unaugmented
    assert "train_noise" in cache_off_reason({**DATA, "train_noise": {"snr_db": [0, None]}}, "train", "audio", frozen)
    assert "eval.snr" in cache_off_reason(DATA, "test", "audio", frozen, noised=True)
    config = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32)
    trainable = _model({"audio": WhisperEncoder(config, pad_to_30s=False, trainable=True)}, tiny_llm)
    assert "trains" in cache_off_reason(DATA, "train", "audio", trainable)
