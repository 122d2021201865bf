"""Llama-AVSR at the paper's shapes with random weights, built from configs (nothing is
downloaded), Llama-AVSR-like batches, and the timing and peak-memory measures of the benchmarks
that compare ways of running it (bench_train_step.py, bench_feature_cache.py).

Shapes ("paper"): Whisper-medium's encoder (24 layers, width 1024, 80 mel bins), AV-HuBERT Large
(24 layers, width 1024, ResNet-18 frontend on 88x88 crops), Llama-3.2-1B (16 layers, width 2048,
32 heads / 8 KV heads, 128256-token vocabulary, tied embeddings) with LoRA as in
configs/model/llama_avsr.yaml; "ci" shrinks every width to check that a benchmark runs. ``depth``
keeps that fraction of each stack's layers (for a CPU), so that the encoders' share of a step stays
about what it is at full depth (1.0).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.profiler import ProfilerActivity, profile
from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig

from avsr_sinks.data import collate_samples
from avsr_sinks.data.media import SAMPLE_RATE, SAMPLES_PER_FRAME, VIDEO_FPS
from avsr_sinks.encoders import AVHubertEncoder, WhisperEncoder
from avsr_sinks.encoders.avhubert import AVHubertConfig
from avsr_sinks.model.avsr import DecorrelationSettings, LlamaAVSR
from avsr_sinks.model.llm import LoraSettings, prepare_llm
from avsr_sinks.model.tiny_llm import PROMPT_WORDS, SPECIALS, word_tokenizer
from avsr_sinks.training.build import frozen_dtype

ROOT = Path(__file__).resolve().parent.parent
PAPER_MODEL = OmegaConf.to_container(OmegaConf.load(ROOT / "configs/model/llama_avsr.yaml"))
PAPER_BATCH_FRAMES = int(OmegaConf.load(ROOT / "configs/data/lrs2.yaml").max_frames)

WHISPER_MEDIUM = dict(d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096,
                      num_mel_bins=80, decoder_layers=1, dropout=0.0)
LLAMA_3_2_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                    num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                     "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                     "original_max_position_embeddings": 8192})


@dataclasses.dataclass(frozen=True)
class Shapes:
    whisper: dict  # WhisperConfig fields
    avhubert: AVHubertConfig
    llama: dict  # LlamaConfig fields


SHAPES = {
    "paper": Shapes(WHISPER_MEDIUM, AVHubertConfig.large(), LLAMA_3_2_1B),
    # Tiny widths that run every code path of a benchmark in seconds (benchmarks/gpu_check.sh --cpu);
    # their timings mean nothing.
    "ci": Shapes({**WHISPER_MEDIUM, "d_model": 32, "encoder_attention_heads": 2, "encoder_ffn_dim": 64},
                 AVHubertConfig(dim=32, heads=2, ffn_dim=64, resnet_widths=(4, 4, 8, 8), conv_pos=16, conv_pos_groups=4),
                 {**LLAMA_3_2_1B, "vocab_size": 2000, "hidden_size": 64, "intermediate_size": 128,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}),
}
WORDS_PER_SECOND = 2.5  # LRS2/LRS3 speakers say about 2-3 words a second


def vocabulary(shapes: Shapes) -> list[str]:
    """The words of the word-level tokenizer that gives the LLM's vocabulary size."""
    return [f"w{i}" for i in range(shapes.llama["vocab_size"] - len(SPECIALS) - len(PROMPT_WORDS))]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every paper-shape benchmark takes: model size, batch, repeats, device."""
    parser.add_argument("--depth", type=float, default=1.0,
                        help="keep this fraction of each stack's layers, at least one (default: all of them)")
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="paper", help="ci: tiny widths, to check the script runs")
    parser.add_argument("--max-frames", type=int, default=PAPER_BATCH_FRAMES,
                        help="the batch's budget of padded video frames (default: configs/data/lrs2.yaml's)")
    parser.add_argument("--compression", type=int, nargs=2, default=(4, 2), metavar=("AUDIO", "VIDEO"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def kept(layers: int, depth: float) -> int:
    return max(1, round(layers * depth))


def build_paper_model(shapes: Shapes, depth: float, compression: tuple[int, int] = (4, 2),
                      decor_lambda: float = 0.0, device: torch.device = torch.device("cpu"), seed: int = 0) -> LlamaAVSR:
    """AVSR Llama-AVSR with random float32 weights, built on ``device``: frozen Whisper
    (``pad_to_30s`` as the paper's config) and AV-HuBERT, average pooling by ``compression``, MLP
    projectors, the Llama with the paper config's LoRA, attention implementation and activation
    checkpointing."""
    torch.manual_seed(seed)
    audio = PAPER_MODEL["audio_encoder"]
    llm_settings = PAPER_MODEL["llm"]
    with device:  # random initialisation of a billion parameters is minutes on a CPU, seconds on a GPU
        whisper = WhisperEncoder(WhisperConfig(**{**shapes.whisper, "encoder_layers": kept(shapes.whisper["encoder_layers"], depth)}),
                                 pad_to_30s=audio["pad_to_30s"])
        avhubert = AVHubertEncoder(dataclasses.replace(shapes.avhubert, layers=kept(shapes.avhubert.layers, depth)),
                                   modality="video")
        config = LlamaConfig(**{**shapes.llama, "num_hidden_layers": kept(shapes.llama["num_hidden_layers"], depth)},
                             attn_implementation=llm_settings["attn_implementation"])
        llm, tokenizer, special = prepare_llm(LlamaForCausalLM(config), word_tokenizer(vocabulary(shapes)),
                                              LoraSettings(**llm_settings["lora"]),
                                              bool(llm_settings.get("activation_checkpointing", False)))
        # The paper's layers 2..L-1 are none of a shallow LLM's 1 or 2: then the loss reads every layer.
        decor_layers = None if config.num_hidden_layers >= 3 else list(range(1, config.num_hidden_layers + 1))
        model = LlamaAVSR(llm, tokenizer, special, "avsr", list(compression), audio_encoder=whisper,
                          video_encoder=avhubert, decorrelation=DecorrelationSettings(weight=decor_lambda, layers=decor_layers))
    return model.to(device)  # buffers made from numpy (Whisper's mel filters) start on the CPU


def paper_frozen_dtypes(device: torch.device) -> dict[str, torch.dtype]:
    """{"llm", "audio", "video"}: the dtype the paper config stores each frozen part in on ``device``."""
    trainer = {"accelerator": device.type}
    return {part: frozen_dtype(PAPER_MODEL[key].get("dtype"), trainer)
            for part, key in (("llm", "llm"), ("audio", "audio_encoder"), ("video", "video_encoder"))}


def cast_frozen_weights(model: LlamaAVSR, dtypes: dict[str, torch.dtype]) -> LlamaAVSR:
    """``model`` with its frozen weights in ``dtypes`` (as training.build stores them) and every
    trainable parameter left in float32, its values untouched."""
    model.encoders["audio"].encoder.to(dtypes["audio"])
    model.encoders["video"].to(dtypes["video"])
    for parameter in model.llm.parameters():
        if not parameter.requires_grad:
            parameter.data = parameter.data.to(dtypes["llm"])
    return model


def utterance(index: int, seconds: float, words: list[str], generator: torch.Generator) -> dict:
    """One dataset-style sample of ``seconds``: 16 kHz audio, normalised 88x88 crops, a transcript."""
    frames = round(seconds * VIDEO_FPS)
    count = max(1, round(seconds * WORDS_PER_SECOND))
    text = " ".join(words[int(i)] for i in torch.randint(len(words), (count,), generator=generator))
    return {"id": f"utt{index:05d}", "text": text,
            "audio": 0.1 * torch.randn(frames * SAMPLES_PER_FRAME, generator=generator),
            "video": torch.randn(frames, 88, 88, generator=generator)}


def llama_avsr_batch(max_frames: int, words: list[str], device: torch.device, seconds: tuple[float, float] = (2.0, 6.0),
                     seed: int = 0) -> dict:
    """A collated batch on ``device`` as the frame-budget sampler makes them: utterances of uniform
    random duration in ``seconds`` saying random ``words``, as many as fit ``max_frames`` padded
    video frames (at least one)."""
    generator = torch.Generator().manual_seed(seed)
    samples, longest = [], 0
    while True:
        duration = seconds[0] + (seconds[1] - seconds[0]) * float(torch.rand((), generator=generator))
        frames = round(duration * VIDEO_FPS)
        if samples and (len(samples) + 1) * max(longest, frames) > max_frames:
            return on_device(collate_samples(samples), device)
        samples.append(utterance(len(samples), duration, words, generator))
        longest = max(longest, frames)


def on_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def describe_batch(batch: dict) -> str:
    seconds = batch["audio_lengths"].float() / SAMPLE_RATE
    return (f"{len(batch['ids'])} utterances of {seconds.min():.1f}-{seconds.max():.1f} s "
            f"({int(batch['video'].shape[1])} padded video frames)")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``step``, with the device's queue drained on both sides."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_times(steps: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Each step ``repeats`` times in turns (A, B, A, B, ...), after one untimed call of each, so
    that drifting machine load hits every step alike. Seconds per call, per step."""
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    return times


def peak_bytes(step: Callable[[], object], device: torch.device) -> int:
    """The most memory ``step`` holds at once beyond what was allocated when it started: CUDA's
    allocator peak, or on a CPU the peak of torch's allocations and frees recorded by the profiler
    (the process's RSS would keep what glibc caches from earlier steps)."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    allocations = []

    def walk(nodes) -> None:
        for node in nodes:
            if node.tag.name == "Allocation" and str(node.extra_fields.device) == "cpu":
                allocations.append((node.start_time_ns, node.extra_fields.alloc_size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    held = peak = 0
    for _, size in sorted(allocations):
        held += size
        peak = max(peak, held)
    return peak


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"
