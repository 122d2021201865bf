"""The LLM input layout of DESIGN.md §2, checked position by position."""

import torch

from avsr_sinks.model.avsr import LlamaAVSR
from avsr_sinks.model.sequence import IGNORE_INDEX
from conftest import FrameEncoder


def _model(tiny_llm, task, compression):
    llm, tok, special = tiny_llm
    return LlamaAVSR(llm, tok, special, task, compression,
                     audio_encoder=FrameEncoder("audio", hop=100), video_encoder=FrameEncoder("video", hop=1))


def _batch():
    # sample 0: 1000 samples -> 10 audio frames; 6 video frames. sample 1: 400 -> 4; 3 frames.
    return {
        "audio": torch.randn(2, 1000), "audio_lengths": torch.tensor([1000, 400]),
        "video": torch.randn(2, 6, 4, 4), "video_lengths": torch.tensor([6, 3]),
        "text": ["one two three", "red"], "ids": ["a", "b"],
    }


def test_avsr_layout_ragged_batch(tiny_llm):
    model = _model(tiny_llm, "avsr", [4, 2])
    _, tok, sp = tiny_llm
    inputs = model.assemble(_batch())
    # audio tokens: ceil(10/4)=3 and ceil(4/4)=1; video: ceil(6/2)=3 and ceil(3/2)=2.
    n_prompt = len(model.prompt_ids)
    expected_len = [1 + (1 + 3 + 1) + (1 + 3 + 1) + n_prompt + 3 + 1, 1 + (1 + 1 + 1) + (1 + 2 + 1) + n_prompt + 1 + 1]
    assert inputs.attention_mask.sum(1).tolist() == expected_len
    labels0 = inputs.token_labels[0]
    assert labels0[:7] == ["BOS", "<audio>", "audio[0]", "audio[1]", "audio[2]", "</audio>", "<video>"]
    assert labels0[7:11] == ["video[0]", "video[1]", "video[2]", "</video>"]
    assert labels0[11 + n_prompt:expected_len[0]] == ["text[0]", "text[1]", "text[2]", "EOS"]
    assert inputs.token_labels[1][expected_len[1]:] == ["PAD"] * (expected_len[0] - expected_len[1])
    # right padding, BOS at 0 of every sample, positions 0..len-1
    assert inputs.attention_mask[1, expected_len[1]:].eq(0).all()
    assert inputs.position_ids[1, : expected_len[1]].tolist() == list(range(expected_len[1]))
    # labels: -100 on the prefix and padding, transcript ids then EOS
    words = tok("one two three", add_special_tokens=False).input_ids
    t0 = 11 + n_prompt
    assert inputs.labels[0, :t0].eq(IGNORE_INDEX).all()
    assert inputs.labels[0, t0:t0 + 4].tolist() == words + [sp.eos]
    assert inputs.labels[1, expected_len[1]:].eq(IGNORE_INDEX).all()
    # the delimiter and BOS embeddings are the LLM's own embeddings of those ids
    embed = model.llm.get_input_embeddings()
    ids = torch.tensor([sp.bos, sp.audio_start, sp.audio_end, sp.video_start, sp.video_end])
    torch.testing.assert_close(inputs.inputs_embeds[0, [0, 1, 5, 6, 10]], embed(ids))
    # the word-level demo tokenizer lowercases: every prompt word is known
    assert n_prompt == 6 and tok.unk_token_id not in model.prompt_ids


def test_modality_tokens_are_the_projected_encoder_features(tiny_llm):
    model = _model(tiny_llm, "asr", [4])
    batch = _batch()
    inputs = model.assemble(batch)
    feats, lengths = model.encoders["audio"](audio=batch["audio"], audio_lengths=batch["audio_lengths"])
    # avg-pool by 4 of sample 1's 4 valid frames = one token = their mean
    pooled = feats[1, :4].mean(0)
    torch.testing.assert_close(inputs.inputs_embeds[1, 2], model.projectors["audio"](pooled))
    # sample 0's last window holds frames 8, 9 only (10 valid frames): padding does not dilute it
    torch.testing.assert_close(inputs.inputs_embeds[0, 4], model.projectors["audio"](feats[0, 8:10].mean(0)))


def test_task_layouts_have_only_their_modalities(tiny_llm):
    for task, compression, present, absent in [("asr", [4], "<audio>", "<video>"), ("vsr", [2], "<video>", "<audio>")]:
        labels = _model(tiny_llm, task, compression).assemble(_batch()).token_labels[0]
        assert labels[1] == present and absent not in labels


def test_generation_layout_is_left_padded_prefix(tiny_llm):
    model = _model(tiny_llm, "avsr", [4, 2])
    train, gen = model.assemble(_batch()), model.assemble(_batch(), for_generation=True)
    prefix = train.prefix_mask.sum(1).tolist()
    assert gen.attention_mask.sum(1).tolist() == prefix
    longest = max(prefix)
    assert gen.token_labels[1][: longest - prefix[1]] == ["PAD"] * (longest - prefix[1])
    assert gen.token_labels[1][longest - prefix[1]] == "BOS"
    assert gen.position_ids[1, longest - prefix[1]:].tolist() == list(range(prefix[1]))
    assert gen.token_labels[0][-1].startswith("prompt[")


def test_bad_compression_is_a_clear_error(tiny_llm):
    import pytest

    with pytest.raises(ValueError, match="two integers"):
        _model(tiny_llm, "avsr", [4])
    with pytest.raises(ValueError, match="one integer"):
        _model(tiny_llm, "asr", [4, 2])


def test_projector_matching_the_embedding_norm_starts_at_the_text_embeddings_norm(tiny_llm):
    llm, tok, special = tiny_llm
    model = LlamaAVSR(llm, tok, special, "asr", [4], audio_encoder=FrameEncoder("audio", hop=100),
                      projector_matches_embedding_norm=True)
    weight = llm.get_input_embeddings().weight
    expected = sum(float(weight[i].norm()) for i in range(weight.shape[0])) / weight.shape[0]
    batch = _batch()
    with torch.no_grad():
        tokens = model.encode(batch)["audio"]
    norms = tokens.features[0, :3].norm(dim=-1)  # sample 0's 3 valid tokens
    # a LayerNorm's output has norm sqrt(D) (to its eps) before the gain, so every token starts there
    torch.testing.assert_close(norms, torch.full_like(norms, expected), rtol=1e-3, atol=0)
    plain = _model(tiny_llm, "asr", [4])
    with torch.no_grad():
        assert not torch.allclose(plain.encode(batch)["audio"].features[0, :3].norm(dim=-1), norms, rtol=0.05)


def test_sample_limits_match_the_real_encoders_and_the_assembled_sequence(tiny_llm):
    """What the dataset checks on a CSV row before reading it (sample_limits: a compression window,
    the sequence length) against what the real Whisper and AV-HuBERT encoders and the assembly give."""
    from transformers import WhisperConfig

    from avsr_sinks.data import LabelRow
    from avsr_sinks.encoders import AVHubertConfig, AVHubertEncoder, WhisperEncoder

    torch.manual_seed(0)
    whisper = WhisperEncoder(WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2,
                                           encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=2,
                                           decoder_ffn_dim=32), pad_to_30s=False)
    avhubert = AVHubertEncoder(AVHubertConfig(layers=1, dim=16, heads=2, ffn_dim=32, resnet_widths=(2, 2, 4, 4),
                                              conv_pos=8, conv_pos_groups=4))
    llm, tok, special = tiny_llm
    model = LlamaAVSR(llm, tok, special, "avsr", [6, 3], audio_encoder=whisper, video_encoder=avhubert).eval()
    limits = model.sample_limits()
    for frames in (limits.min_frames - 1, limits.min_frames):  # one frame short of the window, then enough
        with torch.no_grad():
            audio = whisper(torch.randn(1, 640 * frames), torch.tensor([640 * frames]))[1]
            video = avhubert(video=torch.randn(1, frames, 88, 88), video_lengths=torch.tensor([frames]))[1]
        full_windows = int(audio) >= 6 and int(video) >= 3  # encoder frames for one window of each modality
        assert full_windows == (frames == limits.min_frames), (frames, int(audio), int(video))
    frames, text = 7, "one two three"
    batch = {"audio": torch.randn(1, 640 * frames), "audio_lengths": torch.tensor([640 * frames]),
             "video": torch.randn(1, frames, 88, 88), "video_lengths": torch.tensor([frames]), "text": [text], "ids": ["x"]}
    with torch.no_grad():
        positions = int(model.assemble(batch).attention_mask.sum())
    assert limits.sequence_length(LabelRow("d", "x", frames, "", text)) == positions
    assert limits.max_positions == llm.config.max_position_embeddings
