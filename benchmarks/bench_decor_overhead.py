"""Cost of the decorrelation loss: one LoRA training step of the LLM with lambda=0 vs lambda>0.

The same random Llama (with LoRA, as in training), the same inputs (a Llama-AVSR-like sequence:
BOS, modality tokens, prompt, transcript), timed side by side in one process. The steps
alternate between the two settings so that drifting machine load hits both equally.

    python benchmarks/bench_decor_overhead.py [--hidden 512 --layers 8 --tokens 256 --batch 4]
    python benchmarks/bench_decor_overhead.py --device cuda --hidden 2048 --layers 16   # Llama-3.2-1B shape
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from avsr_sinks.model.llm import LoraSettings, load_llm
from avsr_sinks.model.tiny_llm import build_tiny_llm
from avsr_sinks.sinks.decorrelation import decorrelation_loss
from avsr_sinks.sinks.hooks import HiddenStateCollector


def step(llm, embeds, mask, labels, layers, weight):
    """Forward, CE (+ weight * decorrelation over ``layers``), backward; returns seconds."""
    if embeds.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    if weight > 0:
        with HiddenStateCollector(llm, layers) as collector:
            logits = llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        loss = loss + weight * decorrelation_loss(collector.stacked(), mask)
    else:
        logits = llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
    loss.backward()
    llm.zero_grad(set_to_none=True)
    if embeds.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--weight", type=float, default=100.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_llm(folder, [f"w{i}" for i in range(500)], hidden_size=args.hidden, num_layers=args.layers,
                              num_heads=max(args.hidden // 64, 1), num_kv_heads=max(args.hidden // 256, 1),
                              intermediate_size=4 * args.hidden)
        llm, _, _ = load_llm(path, LoraSettings(rank=16, alpha=32, dropout=0.0))
    device = torch.device(args.device)
    llm.to(device).train()
    embeds = torch.randn(args.batch, args.tokens, args.hidden, device=device)
    mask = torch.ones(args.batch, args.tokens, dtype=torch.long, device=device)
    labels = torch.randint(0, 500, (args.batch, args.tokens), device=device)
    layers = list(range(1, args.layers - 1))  # the paper's middle layers 2..L-1, 0-indexed

    for weight in (0.0, args.weight):  # warm-up both paths
        step(llm, embeds, mask, labels, layers, weight)
    times = {0.0: [], args.weight: []}
    for _ in range(args.steps):
        for weight in times:
            times[weight].append(step(llm, embeds, mask, labels, layers, weight))
    plain, decor = (statistics.median(times[w]) for w in times)
    print(f"LLM hidden={args.hidden} layers={args.layers} tokens={args.tokens} batch={args.batch} on {device}; "
          f"median of {args.steps} alternating steps")
    print(f"  lambda=0        : {plain * 1e3:8.1f} ms/step")
    print(f"  lambda={args.weight:<9g}: {decor * 1e3:8.1f} ms/step")
    print(f"  ratio decor/plain: {decor / plain:.3f}")


if __name__ == "__main__":
    main()
