"""The embedding layers alone, at Llama-3.2-1B's vocabulary (128256 + 5 added rows x 2048, tied):
what training the added token rows costs, peft's ``trainable_token_indices`` (the way before)
against ``avsr_sinks/model/added_tokens.py``, and both against frozen layers (nothing trains).

    python benchmarks/bench_added_tokens.py [--vocab 128256 --hidden 2048 --batch 4 --length 40 --labels 16]

A step looks up ``--batch`` x ``--length`` token ids (the prompt and transcript part of a batch,
with the added delimiters and pad among them), projects ``--labels`` positions a row onto the
vocabulary through the tied output layer, and backpropagates a cross-entropy. Times are the fastest
of ``--repeats`` steps taken in turns; memory is the most a step holds beyond the weights
(torch's CPU allocations, or CUDA's allocator peak). The two trainable ways must give the same
loss and the same gradient of the added rows.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.model.added_tokens import AddedTokenEmbedding, train_added_token_rows
from paper_shapes import LLAMA_3_2_1B, interleaved_times, mib, peak_bytes

ADDED = 5  # <audio> </audio> <video> </video> and a pad token


def embedding_layers(vocab: int, hidden: int, device: torch.device) -> LlamaForCausalLM:
    """A one-layer Llama with the vocabulary already grown by the added rows, frozen."""
    config = LlamaConfig(**{**LLAMA_3_2_1B, "vocab_size": vocab + ADDED, "hidden_size": hidden, "num_hidden_layers": 1,
                            "intermediate_size": 64, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 64})
    with device:
        return LlamaForCausalLM(config).requires_grad_(False)


def with_peft_rows(model: LlamaForCausalLM, added: list[int]):
    """The way before: peft's trainable_token_indices (LoRA on q/v as prepare_llm had it)."""
    config = LoraConfig(r=32, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                        trainable_token_indices={"embed_tokens": added}, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config).get_base_model()


def with_added_rows(model: LlamaForCausalLM, added: list[int]):
    train_added_token_rows(model, added)
    return model


def step(model, ids: torch.Tensor, keep: torch.Tensor, targets: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """Lookup, a stand-in for the decoder (``decoder``, trainable, as LoRA makes the hidden states
    need a gradient), the tied output layer on the kept positions, cross-entropy, backward; the loss."""
    hidden = torch.tanh(model.get_input_embeddings()(ids) + decoder)
    logits = model.get_output_embeddings()(hidden[:, keep])
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    loss.backward()
    decoder.grad = None
    return loss.detach()


def rows_gradient(model) -> torch.Tensor:
    embedding = model.get_input_embeddings()
    if isinstance(embedding, AddedTokenEmbedding):
        return embedding.added_rows.grad
    return embedding.token_adapter.trainable_tokens_delta["default"].grad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=LLAMA_3_2_1B["vocab_size"])
    parser.add_argument("--hidden", type=int, default=LLAMA_3_2_1B["hidden_size"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--labels", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    added = list(range(args.vocab, args.vocab + ADDED))
    frozen = embedding_layers(args.vocab, args.hidden, device)
    models = {"frozen": frozen, "peft trainable_token_indices": with_peft_rows(copy.deepcopy(frozen), added),
              "added_tokens.py": with_added_rows(copy.deepcopy(frozen), added)}
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(args.vocab + ADDED, (args.batch, args.length), generator=generator)
    ids[:, :ADDED] = torch.tensor(added)  # every added token in every row
    keep = torch.arange(args.length - args.labels, args.length)
    targets = torch.randint(args.vocab + ADDED, (args.batch, args.labels), generator=generator)
    ids, keep, targets = ids.to(device), keep.to(device), targets.to(device)
    decoder = torch.zeros(args.hidden, device=device, requires_grad=True)
    print(f"{device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads; vocabulary {args.vocab} + {ADDED} "
          f"added x {args.hidden} (tied); {args.batch} x {args.length} ids, {args.labels} labelled positions a row")

    losses, gradients = {}, {}
    for name, model in models.items():
        losses[name] = float(step(model, ids, keep, targets, decoder))
        if name != "frozen":
            gradients[name] = rows_gradient(model).clone()
        model.zero_grad(set_to_none=True)
    steps = {name: (lambda m=model: (step(m, ids, keep, targets, decoder), m.zero_grad(set_to_none=True))) for name, model in models.items()}
    times = interleaved_times(steps, args.repeats, device)
    memory = {name: peak_bytes(run, device) for name, run in steps.items()}
    fastest = {name: min(t) for name, t in times.items()}
    print(f"\n| layers | ms/step (fastest of {args.repeats}) | step's peak beyond the weights | loss |\n|---|---|---|---|")
    for name in models:
        print(f"| {name} | {1000 * fastest[name]:.1f} | {mib(memory[name])} | {losses[name]:.6f} |")
    old, new = "peft trainable_token_indices", "added_tokens.py"
    print(f"\nadded_tokens.py vs peft: {fastest[old] / fastest[new]:.2f}x faster, {memory[new] / memory[old]:.3f}x the memory; "
          f"vs frozen: {fastest[new] / fastest['frozen']:.2f}x the time, {memory[new] / memory['frozen']:.2f}x the memory")
    same_loss = abs(losses[new] - losses[old]) <= 1e-5 * abs(losses[old])
    same_gradient = torch.allclose(gradients[new], gradients[old], rtol=1e-4, atol=1e-7)
    print(f"loss {'same' if same_loss else 'DIFFERENT'}, added rows' gradient {'same' if same_gradient else 'DIFFERENT'}")
    return 0 if same_loss and same_gradient else 1


if __name__ == "__main__":
    sys.exit(main())
