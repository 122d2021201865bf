"""AV-HuBERT encoder: official checkpoint format, safe unpickling, padding, freezing, filterbank."""

import argparse
import math
import os
import sys
import types

import numpy as np
import pytest
import torch

from avsr_sinks.encoders import AVHubertConfig, AVHubertEncoder, CheckpointError
from avsr_sinks.encoders.filterbank import audio_features, log_filterbank, stacked_filterbank

TINY = AVHubertConfig(layers=2, dim=32, heads=4, ffn_dim=64, resnet_widths=(4, 8, 8, 16), conv_pos=8, conv_pos_groups=4)
OFFICIAL_CFG = {  # the cfg.model names fairseq writes
    "_name": "av_hubert", "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_attention_heads": 4,
    "encoder_ffn_embed_dim": 64, "audio_feat_dim": 104, "conv_pos": 8, "conv_pos_groups": 4,
    "layer_norm_first": True, "modality_fuse": "concat", "dropout": 0.1, "attention_dropout": 0.1,
    "activation_dropout": 0.0, "dropout_input": 0.0, "encoder_layerdrop": 0.05,
}


def randomise(module, seed):
    """Random weights everywhere (BN statistics included) so that mapping mistakes show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator) + 0.5 if "running_var" in name else \
                    torch.randn(tensor.shape, generator=generator) * 0.3
                tensor.copy_(values)
    return module


def official_state(source, seed=1):
    """The source model's state dict with official extras: pos_conv as weight_g/weight_v and the
    pretraining-only keys. Sets the source's fused weight to g * v / ||v|| computed here by hand."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: value.clone() for key, value in source.state_dict().items()}
    v = torch.randn(state["encoder.pos_conv.0.weight"].shape, generator=generator)
    g = torch.rand(1, 1, v.shape[2], generator=generator) + 0.5
    norms = torch.stack([torch.sqrt((v[:, :, k] ** 2).sum()) for k in range(v.shape[2])])  # per kernel tap
    with torch.no_grad():
        source.encoder.pos_conv[0].weight.copy_(g * v / norms.view(1, 1, -1))
    del state["encoder.pos_conv.0.weight"]
    state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"] = g, v
    state["final_proj.weight"] = torch.randn(256, 32)
    state["label_embs_concat"] = torch.randn(504, 256)
    state["mask_emb"] = torch.randn(32)
    return state


class Dictionary:  # what av_hubert's fix_state.py leaves in task_state
    def __init__(self):
        self.symbols, self.count, self.indices = ["<s>", "<pad>"], [1, 1], {"<s>": 0, "<pad>": 1}


def save_with_fake_fairseq(obj, path):
    """torch.save with Dictionary importable as fairseq.data.dictionary.Dictionary, then forgotten."""
    names = ["fairseq", "fairseq.data", "fairseq.data.dictionary"]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    Dictionary.__module__ = "fairseq.data.dictionary"
    sys.modules["fairseq.data.dictionary"].Dictionary = Dictionary
    try:
        torch.save(obj, path)
    finally:
        for name in names:
            del sys.modules[name]


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return randomise(AVHubertEncoder(TINY, "audiovisual"), seed=0)


@pytest.fixture(scope="module")
def checkpoint_path(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_vox_iter5.pt"
    checkpoint = {"cfg": {"model": OFFICIAL_CFG, "task": {"labels": ["wrd"]}}, "model": official_state(source),
                  "task_state": {"dictionaries": [Dictionary()]}}
    save_with_fake_fairseq(checkpoint, path)
    assert "fairseq.data.dictionary" not in sys.modules
    return path


def test_official_checkpoint_loads_and_matches_source(source, checkpoint_path):
    encoder = AVHubertEncoder.from_fairseq_checkpoint(checkpoint_path, modality="audiovisual")
    assert encoder.config.resnet_widths == (4, 8, 8, 16) and encoder.config.layers == 2 and encoder.output_dim == 32
    torch.manual_seed(1)
    video, audio = torch.randn(2, 7, 88, 88), torch.randn(2, 7 * 640)
    features, lengths = encoder(video, None, audio, None)
    assert features.shape == (2, 7, 32) and lengths.tolist() == [7, 7]  # 25 Hz: T frames in, T out
    with torch.no_grad():
        expected, _ = source(video, None, audio, None)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)


def test_args_namespace_and_real_omegaconf_cfg_load(source, tmp_path):
    from omegaconf import OmegaConf

    state = official_state(source)
    for name, meta in [("args.pt", {"args": argparse.Namespace(**OFFICIAL_CFG)}),
                       ("omegaconf.pt", {"cfg": OmegaConf.create({"model": OFFICIAL_CFG})})]:
        torch.save({**meta, "model": state}, tmp_path / name)
        encoder = AVHubertEncoder.from_fairseq_checkpoint(tmp_path / name)
        assert encoder.config.heads == 4 and encoder.config.ffn_dim == 64


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"cfg": {"model": OFFICIAL_CFG}, "model": {}, "extra": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to unpickle.*evil.pt|evil.pt.*refused to unpickle"):
        AVHubertEncoder.from_fairseq_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_missing_and_unexpected_keys_are_listed(source, tmp_path):
    state = official_state(source)
    del state["encoder.layers.1.fc1.weight"]
    state["encoder.layers.9.fc1.weight"] = torch.zeros(1)
    torch.save({"cfg": {"model": OFFICIAL_CFG}, "model": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: \['encoder.layers.1.fc1.weight'\].*unexpected keys: \['encoder.layers.9.fc1.weight'\]"):
        AVHubertEncoder.from_fairseq_checkpoint(tmp_path / "bad.pt")


def test_weight_norm_mapping_matches_torch_weight_norm(source, checkpoint_path):
    encoder = AVHubertEncoder.from_fairseq_checkpoint(checkpoint_path)
    state = official_state(source)  # same seed as the checkpoint's g and v
    reference = torch.nn.Conv1d(32, 32, 8, padding=4, groups=4)
    reference = torch.nn.utils.parametrizations.weight_norm(reference, dim=2)
    with torch.no_grad():
        reference.parametrizations.weight.original0.copy_(state["encoder.pos_conv.0.weight_g"])
        reference.parametrizations.weight.original1.copy_(state["encoder.pos_conv.0.weight_v"])
        reference.bias.copy_(state["encoder.pos_conv.0.bias"])
        x = torch.randn(2, 32, 10)
        torch.testing.assert_close(encoder.encoder.pos_conv(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modality", ["video", "audio", "audiovisual"])
def test_padded_batch_equals_samples_one_by_one(source, modality):
    encoder = AVHubertEncoder(TINY, modality)
    encoder.load_state_dict(source.state_dict())
    torch.manual_seed(2)
    frames = [9, 5, 7]
    video = torch.zeros(3, 9, 88, 88)
    audio = torch.zeros(3, 9 * 640)
    for i, t in enumerate(frames):
        video[i, :t] = torch.randn(t, 88, 88)
        audio[i, : t * 640 - 100] = torch.randn(t * 640 - 100)  # audio a bit shorter than video
    video_lengths, audio_lengths = torch.tensor(frames), torch.tensor([t * 640 - 100 for t in frames])
    batch, lengths = encoder(video, video_lengths, audio, audio_lengths)
    assert lengths.tolist() == frames  # (640 t - 100) samples -> 4t - 1 fbank frames -> t at 25 Hz
    for i, t in enumerate(frames):
        alone, _ = encoder(video[i : i + 1, :t], None, audio[i : i + 1, : t * 640 - 100], None)
        torch.testing.assert_close(batch[i, :t], alone[0], rtol=1e-4, atol=1e-4)


def test_frozen_encoder_gets_no_gradient_and_no_dropout(checkpoint_path):
    encoder = AVHubertEncoder.from_fairseq_checkpoint(checkpoint_path, modality="video")
    encoder.train()
    assert not encoder.training and not any(module.training for module in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    video = torch.randn(1, 6, 88, 88, requires_grad=True)
    first, _ = encoder(video)
    second, _ = encoder(video)
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # dropout 0.1 in the cfg stays off
    assert not first.requires_grad


def test_lora_trains_only_adapters(checkpoint_path):
    encoder = AVHubertEncoder.from_fairseq_checkpoint(checkpoint_path, modality="video")
    encoder.add_lora(rank=2, alpha=4)
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name and ("q_proj" in name or "v_proj" in name) for name in trainable)
    assert len(trainable) == 2 * 2 * TINY.layers  # A and B for q and v in each layer
    features, _ = encoder(torch.randn(1, 4, 88, 88))
    features.sum().backward()
    for name, p in encoder.named_parameters():
        assert (p.grad is not None) == (name in trainable), name


def test_filterbank_tone_peaks_in_its_band():
    # Centre of band b of 26 on the mel scale 0..mel(8000): mel = (b + 1) * mel(8000) / 27.
    mel_top = 2595 * math.log10(1 + 8000 / 700)
    band = 9
    tone_hz = 700 * (10 ** ((band + 1) * mel_top / 27 / 2595) - 1)
    t = torch.arange(16000) / 16000
    energies = log_filterbank(torch.sin(2 * math.pi * tone_hz * t))
    assert energies.shape == (1 + math.ceil((16000 - 400) / 160), 26)
    assert (energies[1:-1].argmax(dim=1) == band).all()


def test_filterbank_first_frame_against_brute_force_dft():
    generator = torch.Generator().manual_seed(3)
    wave = torch.randn(1000, generator=generator, dtype=torch.float64)
    frame = np.array([wave[0].item()] + [wave[n].item() - 0.97 * wave[n - 1].item() for n in range(1, 400)])
    power = np.array([abs(sum(frame[n] * np.exp(-2j * np.pi * k * n / 512) for n in range(400))) ** 2 / 512
                      for k in range(257)])
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = [int(np.floor(513 * hz(m) / 16000)) for m in np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 28)]
    expected = []
    for b in range(26):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        weight = lambda k: (k - lo) / (mid - lo) if k < mid else (hi - k) / (hi - mid)
        expected.append(np.log(sum(weight(k) * power[k] for k in range(lo, hi))))
    np.testing.assert_allclose(log_filterbank(wave)[0].numpy(), expected, rtol=1e-4)


def test_stacking_gives_104_dims_at_25_hz_and_normalises():
    wave = torch.randn(50 * 640)  # two seconds -> 199 fbank frames -> 50 stacked frames
    stacked = stacked_filterbank(wave)
    assert stacked.shape == (50, 104)
    torch.testing.assert_close(stacked[3, 26:52], log_filterbank(wave)[13])  # frame 4*3+1 in slot 1
    feats = audio_features(wave, 52)  # padded to the video length with zeros, then normalised
    assert feats.shape == (52, 104)
    assert abs(feats.mean().item()) < 1e-5 and abs(feats.std(unbiased=False).item() - 1) < 1e-3


def test_video_frontend_matches_official_3d_pool_then_per_frame_trunk(source):
    resnet = source.feature_extractor_video.resnet
    video = torch.randn(2, 5, 88, 88, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        stem = torch.nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))(resnet.frontend3D(video.unsqueeze(1)))
        per_frame = torch.stack([resnet.trunk(stem[:, :, t]) for t in range(5)], dim=1)
        torch.testing.assert_close(resnet(video), per_frame, rtol=1e-5, atol=1e-5)
    assert per_frame.shape == (2, 5, 16)
