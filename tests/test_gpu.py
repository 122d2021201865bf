"""What only a GPU exercises: a bf16-mixed training step, the fused SDPA kernels, sink logits and
attention gates on the device, and DDP over NCCL on every GPU present.

Marked ``gpu``: excluded from the default run, run by ``python -m pytest -m gpu`` (and by
benchmarks/gpu_check.sh). Without CUDA they skip, unless ``AVSR_GPU_TESTS_ON_CPU=1`` (set by
``benchmarks/gpu_check.sh --cpu``) runs them on the CPU (bf16 autocast, the CPU's flash kernel,
DDP over gloo) so that they cannot rot where no GPU is.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from avsr_sinks.encoders import WhisperEncoder
from avsr_sinks.model.avsr import LlamaAVSR
from avsr_sinks.sinks.baselines import apply_gated_attention, apply_sink_logits
from test_end_to_end import TINY

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parent.parent
BF16 = {"rtol": 3e-2, "atol": 3e-2}  # bf16 keeps 8 bits of mantissa


@pytest.fixture
def device():
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("AVSR_GPU_TESTS_ON_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("needs CUDA (AVSR_GPU_TESTS_ON_CPU=1 runs it on the CPU)")


def _batch(device):
    generator = torch.Generator().manual_seed(3)
    return {"audio": 0.1 * torch.randn(2, 16000, generator=generator).to(device),
            "audio_lengths": torch.tensor([16000, 9000], device=device), "text": ["one two three", "blue"], "ids": ["a", "b"]}


def _trainable_grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def test_bf16_mixed_training_step_follows_float32(device, tiny_llm, tiny_whisper_dir):
    llm, tokenizer, special = tiny_llm
    model = LlamaAVSR(llm, tokenizer, special, "asr", [2],
                      audio_encoder=WhisperEncoder.from_pretrained(str(tiny_whisper_dir), pad_to_30s=False)).to(device).train()
    batch = _batch(device)
    full = model(batch)
    full.loss.backward()
    full_grads = _trainable_grads(model)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        mixed = model(batch)
    assert mixed.loss.dtype == torch.float32  # the cross-entropy runs in float32 on bf16 logits
    mixed.loss.backward()
    mixed_grads = _trainable_grads(model)
    torch.testing.assert_close(mixed.loss, full.loss, **BF16)
    moving = [n for n, g in full_grads.items() if g.abs().sum() > 0]
    assert moving, "no gradient reached a trainable parameter"
    for name in moving:
        assert torch.isfinite(mixed_grads[name]).all(), name
        cosine = torch.nn.functional.cosine_similarity(mixed_grads[name].flatten(), full_grads[name].flatten(), dim=0)
        assert cosine > 0.98, f"{name}: bf16 gradient points elsewhere (cosine {cosine:.3f})"


def test_llm_attention_runs_on_the_fused_sdpa_kernels(device, tiny_llm):
    llm = tiny_llm[0].to(device).eval()
    embeds = torch.randn(2, 12, llm.config.hidden_size, generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones(2, 12, dtype=torch.long, device=device)
    mask[1, :4] = 0  # left padding, as in generation
    # A padding mask rules flash attention out on CUDA; the memory-efficient kernel takes masks.
    masked_kernel = SDPBackend.EFFICIENT_ATTENTION if device.type == "cuda" else SDPBackend.FLASH_ATTENTION
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for attention_mask, kernel in ((None, SDPBackend.FLASH_ATTENTION), (mask, masked_kernel)):
            with sdpa_kernel(SDPBackend.MATH):
                expected = llm(inputs_embeds=embeds, attention_mask=attention_mask).logits
            with sdpa_kernel(kernel):  # raises if the kernel cannot run these inputs
                fused = llm(inputs_embeds=embeds, attention_mask=attention_mask).logits
            real = slice(None) if attention_mask is None else mask.bool()
            torch.testing.assert_close(fused[real].float(), expected[real].float(), **BF16)


@pytest.mark.parametrize("apply", [apply_sink_logits, apply_gated_attention], ids=["sink_logit", "gated_attention"])
def test_sink_mitigations_match_the_cpu_and_train_in_bf16(device, tiny_llm, apply):
    llm = tiny_llm[0]
    handle = apply(llm)
    try:
        added = {n: p for n, p in llm.named_parameters() if p.requires_grad and ("sink_logit" in n or "attn_gate" in n)}
        assert added
        embeds = torch.randn(2, 10, llm.config.hidden_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            on_cpu = llm.eval()(inputs_embeds=embeds).logits
            on_device = llm.to(device)(inputs_embeds=embeds.to(device)).logits
        torch.testing.assert_close(on_device.cpu(), on_cpu, rtol=1e-4, atol=1e-4)
        llm.train()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = llm(inputs_embeds=embeds.to(device)).logits
        logits.float().logsumexp(-1).mean().backward()
        for name, parameter in added.items():
            assert parameter.dtype == torch.float32 and parameter.device.type == device.type, name
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert any(parameter.grad.abs().sum() > 0 for parameter in added.values())
    finally:
        handle.remove()


def test_ddp_trains_on_every_device_through_the_cli(device, tmp_path):
    """The demo's CLI with strategy=ddp: NCCL on every GPU present (gloo, 2 processes, on a CPU)."""
    processes = torch.cuda.device_count() if device.type == "cuda" else 2
    accelerator, backend = ("gpu", "nccl") if device.type == "cuda" else ("cpu", "gloo")
    run_dir = tmp_path / "ddp"
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *TINY, f"data.cache_dir={tmp_path / 'cache'}",
               f"hydra.run.dir={run_dir}", "trainer.max_epochs=1", "run_test=false", f"trainer.accelerator={accelerator}",
               f"trainer.devices={processes}", "trainer.strategy=ddp"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr + (run_dir / "train.log").read_text()
    assert f"distributed_backend={backend}" in log
    assert f"Starting with {processes} processes" in log
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] > 0
