"""Peak memory of chunked attention_sink_scores vs eager output_attentions, side by side.

Each measurement runs in a fresh child process; memory is the growth of peak RSS over the RSS
after the model and inputs are built. Eager is skipped (and extrapolated as N^2 from a smaller N,
said so in the output) when its attention maps alone would take over half of the free RAM.

    python benchmarks/bench_sink_scores_memory.py [N]
"""

import multiprocessing as mp
import resource
import sys
import tempfile

import psutil
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.sinks import attention_sink_scores

LAYERS, HIDDEN, HEADS = 4, 256, 16


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _measure(kind: str, model_dir: str, length: int, queue) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    implementation = "eager" if kind == "eager" else "sdpa"
    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation=implementation).eval()
    ids = torch.randint(0, 100, (1, length))
    baseline = psutil.Process().memory_info().rss
    with torch.no_grad():
        if kind == "eager":
            model(input_ids=ids, output_attentions=True)
        else:
            attention_sink_scores(model, input_ids=ids, query_chunk=256)
    queue.put(_peak_rss_bytes() - baseline)


def measure(kind: str, model_dir: str, length: int) -> int:
    queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=_measure, args=(kind, model_dir, length, queue))
    process.start()
    process.join()
    return queue.get()


def main() -> None:
    length = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    model_dir = tempfile.mkdtemp()
    config = LlamaConfig(vocab_size=100, hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=4, max_position_embeddings=length)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    chunked = measure("chunked", model_dir, length)
    maps_bytes = LAYERS * HEADS * length * length * 4
    eager_length = length
    while maps_bytes * (eager_length / length) ** 2 > psutil.virtual_memory().available / 2:
        eager_length //= 2
    eager = measure("eager", model_dir, eager_length) * (length / eager_length) ** 2
    note = "" if eager_length == length else f" (measured at N={eager_length}, extrapolated as N^2)"
    print(f"model: {LAYERS} layers, hidden {HIDDEN}, {HEADS} heads; N = {length}")
    print(f"attention maps alone (L*H*N^2 fp32): {maps_bytes / 2**20:9.1f} MiB")
    print(f"chunked attention_sink_scores peak:  {chunked / 2**20:9.1f} MiB")
    print(f"eager output_attentions peak:        {eager / 2**20:9.1f} MiB{note}")
    print(f"ratio eager / chunked:               {eager / chunked:9.1f}x")


if __name__ == "__main__":
    main()
