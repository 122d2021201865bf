"""Whisper encoder: loading by path, valid lengths, equality with transformers' encoder, frozen."""

import numpy as np
import pytest
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from avsr_sinks.data.feature_cache import encoder_fingerprint
from avsr_sinks.encoders.whisper import WhisperEncoder

SR = 16_000


def _audio(seconds, seed):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(round(seconds * SR), generator=g)


def _batch(waves):
    audio = torch.zeros(len(waves), max(len(w) for w in waves))
    for i, w in enumerate(waves):
        audio[i, : len(w)] = w
    return audio, torch.tensor([len(w) for w in waves])


# By hand: mel frames = samples // 160; the stride-2 conv (k=3, pad=1) gives ceil(mel / 2).
# 0.5 s = 8000 -> 50 mel -> 25; 1 s = 16000 -> 100 -> 50; 3.3 s = 52800 -> 330 -> 165;
# 0.33 s = 5280 -> 33 -> 17.
@pytest.mark.parametrize("pad_to_30s", [True, False])
def test_valid_lengths(tiny_whisper_dir, pad_to_30s):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=pad_to_30s)
    audio, lengths = _batch([_audio(s, i) for i, s in enumerate([0.5, 1.0, 3.3, 0.33])])
    features, frames = encoder(audio, lengths)
    assert frames.tolist() == [25, 50, 165, 17]
    assert features.shape == (4, 165, 32)
    assert encoder.output_dim == 32 and encoder.frame_rate == 50


def test_log_mel_matches_feature_extractor(tiny_whisper_dir):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir))
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    waves = [_audio(1.3, 1), _audio(0.7, 2)]
    audio, _ = _batch(waves)
    audio = nn.functional.pad(audio, (0, 30 * SR - audio.shape[1]))
    expected = extractor([w.numpy() for w in waves], sampling_rate=SR, return_tensors="np").input_features
    np.testing.assert_allclose(encoder.log_mel(audio).numpy(), expected, atol=1e-4)


def _hf_encoder(tiny_whisper_dir):
    return WhisperModel.from_pretrained(tiny_whisper_dir).encoder.eval()


def test_pad_to_30s_equals_transformers_on_padded_mel(tiny_whisper_dir):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=True)
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    waves = [_audio(0.5, 3), _audio(3.3, 4)]
    features, frames = encoder(*_batch(waves))
    mel = extractor([w.numpy() for w in waves], sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        reference = _hf_encoder(tiny_whisper_dir)(mel).last_hidden_state
    for i, n in enumerate(frames.tolist()):
        torch.testing.assert_close(features[i, :n], reference[i, :n], atol=1e-4, rtol=1e-4)


def test_num_layers_returns_that_layer_of_transformers_hidden_states(tiny_whisper_dir):
    """transformers' hidden_states[1] is the stream after the first of the 2 layers, before the
    final LayerNorm (which only the last layer's output gets): what num_layers=1 feeds on."""
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=True, num_layers=1)
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    waves = [_audio(0.5, 3), _audio(3.3, 4)]
    features, frames = encoder(*_batch(waves))
    mel = extractor([w.numpy() for w in waves], sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        hidden = _hf_encoder(tiny_whisper_dir)(mel, output_hidden_states=True).hidden_states
    assert len(hidden) == 3 and not torch.allclose(hidden[1], hidden[2])
    for i, n in enumerate(frames.tolist()):
        torch.testing.assert_close(features[i, :n], hidden[1][i, :n], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"num_layers=3: this Whisper encoder has 2 layers"):
        WhisperEncoder.from_pretrained(str(tiny_whisper_dir), num_layers=3)
    # A feature cache of the cut encoder is not the whole encoder's, and the whole one's is as before.
    whole, also_whole = (WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=True, num_layers=n) for n in (None, 2))
    fingerprints = [encoder_fingerprint(e, {})[0] for e in (encoder, whole, also_whole)]
    assert fingerprints[0] != fingerprints[1] == fingerprints[2]


def test_unpadded_sample_equals_transformers_with_cut_position_table(tiny_whisper_dir):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    wave = _audio(1.0, 5)  # 100 mel frames -> 50 encoder frames
    features, frames = encoder(wave[None], torch.tensor([len(wave)]))
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    mel = extractor(wave.numpy(), sampling_rate=SR, padding="longest", return_tensors="pt").input_features
    assert mel.shape[-1] == 100
    reference = _hf_encoder(tiny_whisper_dir)
    reference.config.max_source_positions = 50  # HF checks the mel length against this
    reference.embed_positions = nn.Embedding.from_pretrained(reference.embed_positions.weight[:50].clone())
    with torch.no_grad():
        expected = reference(mel).last_hidden_state
    assert frames.tolist() == [50]
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)


def test_short_mode_masks_padding_in_ragged_batch(tiny_whisper_dir):
    """The short sample's valid frames do not depend on how many padded frames follow it.

    Its audio is the same in both batches (zeros after it), so only the number of padded keys
    differs: with the padding masked the outputs match; attending to it they do not.
    """
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    short = _audio(0.5, 6)
    in_pair, frames = encoder(*_batch([short, _audio(2.0, 7)]))
    in_longer_pair, _ = encoder(*_batch([short, _audio(3.0, 8)]))
    assert frames.tolist() == [25, 100]
    torch.testing.assert_close(in_pair[0, :25], in_longer_pair[0, :25], atol=1e-5, rtol=1e-5)

    pair, longer_pair = _batch([short, _audio(2.0, 7)])[0], _batch([short, _audio(3.0, 8)])[0]
    with torch.no_grad():
        attended = encoder._encode(encoder.log_mel(pair), None, None)[0, :25]
        attended_longer = encoder._encode(encoder.log_mel(longer_pair), None, None)[0, :25]
    assert (attended - attended_longer).abs().max() > 1e-3


@pytest.mark.parametrize("seconds", [0.5, 0.73, 1.01])
def test_short_mode_sample_in_a_batch_equals_the_sample_alone(tiny_whisper_dir, seconds):
    """Alone, a sample's log-mel and convolutions end at its last sample; in a batch, zeros
    follow it. Every valid frame, the last ones included, must not see the difference."""
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    wave = _audio(seconds, 12)
    alone, frames = encoder(wave[None], torch.tensor([len(wave)]))
    batched, _ = encoder(*_batch([wave, _audio(2.0, 13)]))
    n = int(frames[0])
    assert alone.shape[1] == n
    torch.testing.assert_close(batched[0, :n], alone[0], atol=2e-5, rtol=1e-5)


def test_too_long_and_too_short_audio_are_refused(tiny_whisper_dir):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)
    with pytest.raises(ValueError, match="at most 30 s"):
        encoder(torch.zeros(1, 30 * SR + 160), torch.tensor([30 * SR + 160]))
    with pytest.raises(ValueError, match="at least 160 samples"):
        encoder(torch.zeros(2, 1600), torch.tensor([1600, 100]))


@pytest.mark.parametrize("pad_to_30s", [True, False])
def test_frozen_no_gradients_no_dropout(tiny_whisper_dir, pad_to_30s):
    encoder = WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=pad_to_30s).train()
    assert not encoder.training and not encoder.encoder.training
    audio, lengths = _batch([_audio(0.5, 8), _audio(0.8, 9)])
    first, _ = encoder(audio, lengths)
    second, _ = encoder(audio, lengths)
    assert torch.equal(first, second)  # dropout 0.3 and layerdrop 0.5 in the config: both off
    assert not first.requires_grad
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())


def test_random_init_trainable_gets_gradients():
    config = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2,
                           encoder_ffn_dim=32, dropout=0.0)
    encoder = WhisperEncoder(config, pad_to_30s=False, trainable=True).train()
    assert encoder.training
    features, _ = encoder(_audio(0.5, 10)[None], torch.tensor([8000]))
    features.sum().backward()
    assert encoder.encoder.conv1.weight.grad is not None


def test_transformers_encoder_ignores_attention_mask(tiny_whisper_dir):
    """Why the masked layers are run here: HF's encoder gives the same output with or without a mask."""
    hf = _hf_encoder(tiny_whisper_dir)
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(11))
    mask = torch.zeros(1, 3000, dtype=torch.long)
    mask[:, :100] = 1
    with torch.no_grad():
        torch.testing.assert_close(hf(mel, attention_mask=mask).last_hidden_state, hf(mel).last_hidden_state)
    assert isinstance(hf, HFWhisperEncoder)
