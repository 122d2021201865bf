"""Peak memory of a LoRA training step of the LLM: float32 vs bf16 frozen base, with and without
activation checkpointing, side by side in one run; then what fits on 24/48/80 GB cards.

Llama-3.2-1B's shape (width 2048, MLP 8192, 32 heads / 8 KV heads, vocabulary 128256, tied
embeddings) with LoRA r=32 on q and v (configs/model/llama_avsr.yaml). Fewer layers on a CPU
(``--layers``), all 16 on a GPU. The step is ``LlamaAVSR.forward``'s LLM part: embeddings from the
projectors (they need a gradient), logits at the labelled positions only, cross-entropy, backward,
AdamW step. Memory: CUDA's peak allocation, or on a CPU the peak RSS (VmHWM, reset before the
step); each setting runs in its own process. "weights" is the memory held before the step, "step"
what the step adds (activations, gradients, AdamW state).

    python benchmarks/bench_memory.py [--layers 4 --batch 4 --tokens 256]      # CPU
    python benchmarks/bench_memory.py --device cuda                             # GPU, full depth

The table after the measurements extrapolates to other models. Each setting is also measured at
a quarter of the depth: the difference is the memory a layer adds (per token, scaled by the layer's width,
hidden + MLP size), the rest the memory outside the layers (logits, embedding gradients; scaled by
the tokens). Frozen weights come from parameter counts (Llama 3.2-1B/3B, Llama 2-7B/13B,
Whisper-medium's encoder, AV-HuBERT Large, counted from their configs), the trainable part
(projectors, LoRA) costs float32 weight, gradient and AdamW state, and a fixed allowance covers
the CUDA context and the allocator.
"""

import argparse
import multiprocessing as mp
import os
import tempfile

import psutil
import torch
import torch.nn.functional as F

# Llama 3.2-1B (config.json of meta-llama/Llama-3.2-1B)
SHAPE_1B = dict(hidden_size=2048, intermediate_size=8192, num_heads=32, num_kv_heads=8, full_layers=16)
VOCAB = 128256
LABELS = 30  # transcript tokens a sample (the loss takes logits there only)
LORA = dict(rank=32, alpha=64, dropout=0.05, target_modules=["q_proj", "v_proj"])
SETTINGS = [("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True)]
# Rows of the planning table: (name, layers, hidden, MLP, heads, KV heads, vocabulary, tied embeddings).
PLANNED = [("Llama 3.2-1B", 16, 2048, 8192, 32, 8, 128256, True), ("Llama 3.2-3B", 28, 3072, 8192, 24, 8, 128256, True),
           ("Llama 2-7B", 32, 4096, 11008, 32, 32, 32000, False), ("Llama 2-13B", 40, 5120, 13824, 40, 40, 32000, False)]
CUDA_ALLOWANCE_GB = 2.0  # context, allocator fragmentation, the frozen encoders' transient activations
GB = 1024**3


def _vm_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def _measure(model_dir: str, dtype: str, checkpointing: bool, args, queue) -> None:
    from avsr_sinks.model.avsr import label_predicting_positions
    from avsr_sinks.model.llm import LoraSettings, load_llm

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    llm, _, _ = load_llm(model_dir, LoraSettings(**LORA), dtype=getattr(torch, dtype),
                         activation_checkpointing=checkpointing)
    llm.to(device).train()
    for parameter in llm.parameters():  # page in weights still mapped from the file, so "weights" holds them all
        parameter.detach().sum()
    width = llm.config.hidden_size
    embeds = torch.randn(args.batch, args.tokens, width, device=device, dtype=getattr(torch, dtype), requires_grad=True)
    targets = torch.full((args.batch, args.tokens - 1), -100, device=device)
    targets[:, -LABELS:] = torch.randint(0, VOCAB, (args.batch, LABELS), device=device)
    keep = label_predicting_positions(targets)
    optimizer = torch.optim.AdamW([p for p in llm.parameters() if p.requires_grad], lr=1e-4)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        at_rest = torch.cuda.memory_allocated()
    else:
        at_rest = psutil.Process().memory_info().rss
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # the peak RSS restarts from the current RSS
    for _ in range(2):  # the first step allocates AdamW's state; the second is a steady one
        logits = llm(inputs_embeds=embeds, use_cache=False, logits_to_keep=keep).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets[:, keep].flatten(), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        embeds.grad = None
    peak = torch.cuda.max_memory_allocated() if cuda else _vm_hwm_bytes()
    queue.put((at_rest, peak - at_rest))


def measure(model_dir: str, dtype: str, checkpointing: bool, args) -> tuple[int, int]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(model_dir, dtype, checkpointing, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _count(build) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def frozen_parameter_counts() -> dict[str, int]:
    """Parameters of each planned LLM and of the two encoders, counted on the meta device."""
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from avsr_sinks.encoders.avhubert import AVHubertConfig, AVHubertEncoder

    counts = {}
    for name, layers, hidden, mlp, heads, kv_heads, vocab, tied in PLANNED:
        config = LlamaConfig(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
                             num_key_value_heads=kv_heads, vocab_size=vocab, tie_word_embeddings=tied)
        counts[name] = _count(lambda: LlamaForCausalLM(config))
    whisper_medium = WhisperConfig(d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096,
                                   num_mel_bins=80)
    counts["encoders"] = _count(lambda: WhisperEncoder(whisper_medium)) + _count(
        lambda: AVHubertEncoder(AVHubertConfig.large(), trainable=True))
    return counts


def plan(measured: dict, shallow: dict, args, layers: int, shallow_layers: int) -> None:
    """Estimated peak GB per planned model and setting for ``--plan-tokens`` tokens a step."""
    counts = frozen_parameter_counts()
    width_1b = SHAPE_1B["hidden_size"] + SHAPE_1B["intermediate_size"]
    tokens = args.batch * args.tokens
    print(f"\nPlanning: {args.plan_tokens} tokens a step (e.g. 8 utterances of 512), Whisper-medium encoder + "
          f"AV-HuBERT Large frozen ({counts['encoders'] / 1e6:.0f}M parameters), LoRA r=32 on q,v, two MLP projectors "
          f"1024 -> hidden -> hidden, {CUDA_ALLOWANCE_GB:.0f} GB allowance. Extrapolated from the run above; GB:")
    labels = [("fp32" if dtype == "float32" else "bf16") + ("+AC" if checkpointing else "") for dtype, checkpointing in SETTINGS]
    per_layer = {s: (measured[s][1] - shallow[s][1]) / (layers - shallow_layers) for s in SETTINGS}
    outside_layers = {s: measured[s][1] - per_layer[s] * layers for s in SETTINGS}
    print("measured, MiB per 1000 tokens: " + ", ".join(
        f"{label} {per_layer[s] * 1000 / tokens / 2**20:.0f} a layer + {outside_layers[s] * 1000 / tokens / 2**20:.0f}"
        for label, s in zip(labels, SETTINGS)))
    print(f"{'model':14s} {'params':>7s} " + " ".join(label.rjust(10) for label in labels)
          + "   fits 24/48/80 GB with a bf16 base: without AC | with AC")
    for name, model_layers, hidden, mlp, *_ in PLANNED:
        trainable = 2 * (1024 * hidden + hidden * hidden) + model_layers * 2 * LORA["rank"] * (hidden + hidden)
        row = []
        for setting in SETTINGS:
            weight_bytes = 4 if setting[0] == "float32" else 2
            layer_share = per_layer[setting] * (hidden + mlp) / width_1b * model_layers
            activations = (layer_share + outside_layers[setting]) * args.plan_tokens / tokens
            weights = (counts[name] + counts["encoders"]) * weight_bytes + trainable * 16
            row.append((weights + activations) / GB + CUDA_ALLOWANCE_GB)
        fits = lambda gb: "/".join("y" if gb <= card else "n" for card in (24, 48, 80))  # noqa: E731
        print(f"{name:14s} {counts[name] / 1e9:6.2f}B " + " ".join(f"{gb:10.1f}" for gb in row)
              + f"   {fits(row[2])} | {fits(row[3])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: 8 on a CPU, 16 on a GPU)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256, help="tokens a sample, the last 30 labelled")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plan-tokens", type=int, default=4096)
    args = parser.parse_args()
    layers = args.layers or (SHAPE_1B["full_layers"] if args.device.startswith("cuda") else 8)
    shallow_layers = max(layers // 4, 1)

    from avsr_sinks.model.llm import MODALITY_TOKENS, PAD_TOKEN
    from avsr_sinks.model.tiny_llm import PROMPT_WORDS, SPECIALS, build_tiny_llm

    # The tokens load_llm adds are in the vocabulary already: no resize (transformers' mean-resizing of
    # a 128k x 2048 embedding takes minutes on a CPU, and the new rows would not change the memory).
    added = [*MODALITY_TOKENS, PAD_TOKEN]
    words = added + [f"w{i}" for i in range(VOCAB - len(SPECIALS) - len(PROMPT_WORDS) - len(added))]
    by_depth = {}
    for depth in (layers, shallow_layers):  # the difference is what the layers add (RSS noise spread over many)
        with tempfile.TemporaryDirectory() as folder:
            build_tiny_llm(folder, words, hidden_size=SHAPE_1B["hidden_size"], num_layers=depth,
                           num_heads=SHAPE_1B["num_heads"], num_kv_heads=SHAPE_1B["num_kv_heads"],
                           intermediate_size=SHAPE_1B["intermediate_size"])
            by_depth[depth] = {setting: measure(folder, *setting, args) for setting in SETTINGS}
    measured = by_depth[layers]

    where = "CUDA peak allocated" if args.device.startswith("cuda") else f"peak RSS, {os.cpu_count()} CPUs"
    print(f"Llama-3.2-1B shape, {layers} of 16 layers, vocabulary {VOCAB}, batch {args.batch} x {args.tokens} tokens, "
          f"LoRA r=32 q,v, on {args.device} ({where}); MiB")
    print(f"{'frozen base':12s} {'checkpointing':>13s} {'weights':>9s} {'step':>9s} {'peak':>9s}")
    for (dtype, checkpointing), (at_rest, step) in measured.items():
        print(f"{dtype:12s} {str(checkpointing):>13s} {at_rest / 2**20:9.0f} {step / 2**20:9.0f} {(at_rest + step) / 2**20:9.0f}")
    peak = {setting: sum(values) for setting, values in measured.items()}
    step = {setting: values[1] for setting, values in measured.items()}
    print(f"peak, bf16 base / float32 base:          {peak[('bfloat16', False)] / peak[('float32', False)]:.2f} "
          f"(with checkpointing {peak[('bfloat16', True)] / peak[('float32', True)]:.2f})")
    print(f"step memory, checkpointing / without:     {step[('float32', True)] / step[('float32', False)]:.2f} "
          f"(float32 base), {step[('bfloat16', True)] / step[('bfloat16', False)]:.2f} (bf16 base)")
    print(f"peak, bf16 + checkpointing / float32:     {peak[('bfloat16', True)] / peak[('float32', False)]:.2f}")
    plan(measured, by_depth[shallow_layers], args, layers, shallow_layers)


if __name__ == "__main__":
    main()
