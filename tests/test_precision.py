"""Frozen weights in bf16 beside float32 master weights, and trainer.precision=bf16-true.

The bf16 runs are compared with the float32 run of the same weights (copied across), never with
numbers written down here: the tolerance is the only constant.
"""

import pytest
import torch

from avsr_sinks.training.build import build_model, build_audio_encoder, build_video_encoder, keep_float32_master_weights
from avsr_sinks.training.datamodule import AVSRDataModule, resolve_corpus
from avsr_sinks.training.module import OptimSettings, parameter_groups
from test_end_to_end import TINY, _compose, _train_cfg

# Relative, for losses and encoder features. bf16 keeps 8 bits of mantissa (rounding 2^-9 = 0.2 % a
# weight); measured here: losses within 0.9 % of float32 over two steps, features within 0.6 %. 2 %
# leaves room without hiding a wrong dtype path, which moves them by far more or fails outright.
BF16_TOLERANCE = 0.02


# Dropout off: a bf16 tensor draws other dropout masks than a float32 one from the same seed.
NO_DROPOUT = ["++model.video_encoder.config.dropout=0.0", "++model.video_encoder.config.attention_dropout=0.0",
              "++model.video_encoder.config.layerdrop=0.0"]


def _model(tmp_path, *overrides):
    cfg = _compose("train", [*TINY, *NO_DROPOUT, f"data.cache_dir={tmp_path / 'cache'}", f"output_dir={tmp_path / 'out'}",
                             "decor.lambda=10", *overrides])
    corpus = resolve_corpus(cfg["data"])
    return build_model(cfg, corpus["vocabulary"]), cfg, corpus


def _two_steps(model, batch, autocast):
    """Loss of a training step, one AdamW step, and the loss after it (the same dropout masks in every call)."""
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(parameter_groups(model, OptimSettings(lr=1e-2)))
    losses = []
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(batch).loss
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
    return losses


@pytest.mark.parametrize("baseline", ["none", "sink_logit", "gated_attention"])
@pytest.mark.parametrize("autocast", [False, True], ids=["32-true", "bf16-mixed"])
def test_a_bf16_base_trains_like_float32_with_float32_master_weights(tmp_path, baseline, autocast):
    reference, cfg, corpus = _model(tmp_path, f"baseline.kind={baseline}")
    bf16, _, _ = _model(tmp_path, f"baseline.kind={baseline}", "model.llm.dtype=bfloat16")
    trained = reference.trained_state_keys()
    assert bf16.load_state_dict({k: v for k, v in reference.state_dict().items() if k in trained}, strict=False).unexpected_keys == []
    frozen_llm = [p for n, p in bf16.named_parameters() if not p.requires_grad and n.startswith("llm.")]
    assert frozen_llm and all(p.dtype == torch.bfloat16 for p in frozen_llm)
    batch = next(iter(AVSRDataModule(cfg["data"], corpus, ("audio", "video"), seed=0).train_dataloader()))

    expected, got = _two_steps(reference, batch, autocast=False), _two_steps(bf16, batch, autocast)
    for before_and_after in zip(expected, got):
        assert before_and_after[1] == pytest.approx(before_and_after[0], rel=BF16_TOLERANCE)
    trainable = [(n, p) for n, p in bf16.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n, _ in trainable) and any(n.startswith("projectors.") for n, _ in trainable)
    assert all(p.dtype == torch.float32 for _, p in trainable), [n for n, p in trainable if p.dtype != torch.float32]
    if baseline != "none":
        assert any(baseline.split("_")[0] in n or "attn_gate" in n for n, _ in trainable)


def test_frozen_encoders_stored_in_bf16_give_the_float32_features(tmp_path):
    whisper = {"kind": "whisper", "path": None, "pad_to_30s": False, "trainable": False,
               "config": {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 64,
                          "num_mel_bins": 80, "decoder_layers": 1, "decoder_attention_heads": 4, "decoder_ffn_dim": 64}}
    avhubert = {"kind": "avhubert", "checkpoint": None, "trainable": False, "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
                "config": {"layers": 2, "dim": 32, "heads": 4, "ffn_dim": 64, "resnet_widths": [4, 8, 8, 16]}}
    generator = torch.Generator().manual_seed(0)
    audio, video = torch.randn(2, 16000, generator=generator) * 0.1, torch.randn(2, 25, 88, 88, generator=generator)
    inputs = {"audio": {"audio": audio, "audio_lengths": torch.tensor([16000, 9000])},
              "video": {"video": video, "video_lengths": torch.tensor([25, 14])}}
    for modality, build, settings in (("audio", build_audio_encoder, whisper), ("video", build_video_encoder, avhubert)):
        torch.manual_seed(1)
        full = build(settings, torch.float32)
        half = build(settings, torch.bfloat16)
        half.load_state_dict(full.state_dict())
        keep_float32_master_weights(half)
        assert {p.dtype for p in half.parameters() if not p.requires_grad} == {torch.bfloat16}
        assert {p.dtype for p in half.parameters() if p.requires_grad} <= {torch.float32}  # AV-HuBERT's LoRA
        (expected, lengths), (got, got_lengths) = full(**inputs[modality]), half(**inputs[modality])
        assert torch.equal(lengths, got_lengths) and got.dtype == torch.bfloat16
        relative = (got.float() - expected).norm() / expected.norm()
        assert relative < BF16_TOLERANCE, f"{modality}: bf16 features {relative:.4f} away from float32"


def test_bf16_true_trains_with_decor_and_gates_and_its_checkpoint_evaluates(tmp_path):
    from avsr_sinks.training.checkpoints import load_trained_model
    from avsr_sinks.training.pipeline import train

    out = tmp_path / "run"
    result = train(_train_cfg(tmp_path, out, "trainer.precision=bf16-true", "trainer.max_steps=2", "decor.lambda=10",
                              "baseline.kind=gated_attention", "run_test=false"))
    checkpoint = torch.load(result["last_checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert {v.dtype for k, v in checkpoint["state_dict"].items() if v.is_floating_point()} == {torch.bfloat16}
    model, config = load_trained_model(result["last_checkpoint"])
    batch = next(iter(AVSRDataModule(config["data"], resolve_corpus(config["data"]), ("audio", "video"), seed=0).val_dataloader()))
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(batch).loss)
