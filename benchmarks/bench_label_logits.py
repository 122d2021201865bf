"""Cost of the vocabulary projection: a LoRA training step with logits at every position vs only
at the positions that predict a label (what ``LlamaAVSR.forward`` does), side by side in one process.

A Llama-AVSR-shaped batch: a long audio prefix of embeddings, then a short labelled transcript.
The steps alternate between the two settings so that drifting machine load hits both equally.

    python benchmarks/bench_label_logits.py [--vocab 49152 --hidden 576 --layers 8 --prefix 200 --labels 30]
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from avsr_sinks.model.avsr import label_predicting_positions
from avsr_sinks.model.llm import LoraSettings, load_llm
from avsr_sinks.model.tiny_llm import build_tiny_llm


def step(llm, embeds, targets, keep) -> float:
    """Forward, CE over the labelled positions, backward; returns seconds."""
    start = time.perf_counter()
    logits = llm(inputs_embeds=embeds, use_cache=False, logits_to_keep=keep).logits
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets[:, keep].flatten(), ignore_index=-100)
    loss.backward()
    llm.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=49152)  # SmolLM2; Llama 3 has 128256
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--prefix", type=int, default=200)
    parser.add_argument("--labels", type=int, default=30)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_llm(folder, [f"w{i}" for i in range(args.vocab - 300)], hidden_size=args.hidden,
                              num_layers=args.layers, num_heads=max(args.hidden // 64, 1),
                              num_kv_heads=max(args.hidden // 192, 1), intermediate_size=4 * args.hidden)
        llm, _, _ = load_llm(path, LoraSettings(rank=16, alpha=32, dropout=0.0))
    llm.train()
    length = args.prefix + args.labels
    vocab = llm.get_output_embeddings().out_features
    embeds = torch.randn(args.batch, length, args.hidden)
    targets = torch.full((args.batch, length - 1), -100)
    targets[:, args.prefix - 1:] = torch.randint(0, vocab, (args.batch, args.labels))
    settings = {"every position": torch.arange(length - 1),
                "label positions": label_predicting_positions(targets)}
    for keep in settings.values():  # warm-up both paths
        step(llm, embeds, targets, keep)
    times = {name: [] for name in settings}
    for _ in range(args.steps):
        for name, keep in settings.items():
            times[name].append(step(llm, embeds, targets, keep))
    full, trimmed = (statistics.median(times[name]) for name in settings)
    print(f"vocab={vocab} hidden={args.hidden} layers={args.layers} batch={args.batch} x ({args.prefix} prefix + "
          f"{args.labels} labelled) tokens; median of {args.steps} alternating steps")
    print(f"  logits at every position : {full * 1e3:8.1f} ms/step, logits tensor {args.batch * (length - 1) * vocab * 4 / 2**20:.0f} MiB")
    print(f"  logits at label positions: {trimmed * 1e3:8.1f} ms/step, logits tensor {args.batch * args.labels * vocab * 4 / 2**20:.0f} MiB")
    print(f"  speed-up: {full / trimmed:.2f}x")


if __name__ == "__main__":
    main()
