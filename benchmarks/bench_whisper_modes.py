"""Time WhisperEncoder's two modes on the same audio: pad_to_30s=True vs False.

Random weights at the real whisper-tiny and whisper-base sizes (speed does not depend on
the weights). One timed run per mode after one warm-up call, same machine, same batch.

    python benchmarks/bench_whisper_modes.py [--batch 4] [--seconds 3.0]
"""

import argparse
import time

import torch
from transformers import WhisperConfig

from avsr_sinks.encoders.whisper import WhisperEncoder

SIZES = {
    "whisper-tiny": dict(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536),
    "whisper-base": dict(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048),
}


def time_mode(config: WhisperConfig, pad_to_30s: bool, audio: torch.Tensor, lengths: torch.Tensor) -> float:
    torch.manual_seed(0)
    encoder = WhisperEncoder(config, pad_to_30s=pad_to_30s)
    encoder(audio, lengths)  # warm-up: allocator, kernels, lazy initialisation
    start = time.perf_counter()
    encoder(audio, lengths)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    samples = round(args.seconds * 16_000)
    audio = 0.1 * torch.randn(args.batch, samples, generator=torch.Generator().manual_seed(0))
    lengths = torch.full((args.batch,), samples)
    print(f"batch {args.batch} x {args.seconds} s, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, size in SIZES.items():
        config = WhisperConfig(num_mel_bins=80, **size)
        full = time_mode(config, True, audio, lengths)
        short = time_mode(config, False, audio, lengths)
        print(f"{name}: pad_to_30s=True {full:.3f} s, pad_to_30s=False {short:.3f} s, ratio {full / short:.1f}x")


if __name__ == "__main__":
    main()
