"""One Llama-AVSR training step at the paper's shapes, the reference's way vs this project's
defaults, side by side in one process on the same weights and batch.

    python benchmarks/bench_train_step.py                                  # GPU: full depth, LRS2's batch budget
    python benchmarks/bench_train_step.py --depth 0.125 --max-frames 300  # CPU: layers 3/3/2, 3 utterances

A step is the forward (Whisper-medium and AV-HuBERT Large, frozen; compressors; projectors;
LoRA Llama-3.2-1B; loss) and the backward, on random weights (paper_shapes.py) and a batch of
2-6 s utterances filling the frame budget. The optimizer's update is left out: it is the same in
every mode, and it would move the shared weights between the modes' steps.

- **reference** (Llama-AVSR's way): Whisper on 30 s padding, eager attention returning its
  weights, logits at every position, float32.
- **defaults** (configs/model/llama_avsr.yaml with the trainer's default precision: on a GPU
  bf16-mixed and frozen weights in bf16, on a CPU 32-true and float32): ``LlamaAVSR.forward``,
  logits only where a label is predicted.

Between the two, the settings change one at a time; where a change keeps the same arithmetic
(eager -> SDPA, every position's logits -> the labelled ones') the loss must stay within
float32 rounding, bf16-mixed and bf16 weights within bf16's, and a change of Whisper's padding
computes other features (its loss is printed, not checked). The exit status is 1 when a check fails. Times are
the fastest of ``--repeats`` steps taken in turns (reference, defaults, ...); memory is the
weights' bytes plus the most a step holds beyond them (CUDA's allocator peak, or torch's CPU
allocations). Where the defaults store the frozen weights in bf16 (a GPU), they train a copy of
the model with the same values in that dtype.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import sys

import torch
import torch.nn.functional as F

from avsr_sinks.training.pipeline import _precision
from paper_shapes import (PAPER_MODEL, SHAPES, add_model_arguments, build_paper_model, cast_frozen_weights, describe_batch,
                          interleaved_times, llama_avsr_batch, mib, paper_frozen_dtypes, peak_bytes, vocabulary, weight_bytes)

SAME_MATH_RTOL = 1e-4  # float32 summation-order differences in a ~12-nat loss
BF16_RTOL = 3e-2  # bf16 keeps 8 bits of mantissa in every matmul


DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclasses.dataclass(frozen=True)
class Settings:
    pad_to_30s: bool
    attention: str  # the LLM's attn_implementation; "eager" also returns the weights, as the reference
    every_position_logits: bool
    precision: str  # "32-true" or "bf16-mixed"
    frozen_weights: tuple[tuple[str, torch.dtype], ...]  # (part, dtype) of the LLM, audio and video encoders

    def describe(self) -> str:
        dtypes = {DTYPE_NAMES[dtype] for _, dtype in self.frozen_weights}
        frozen = dtypes.pop() if len(dtypes) == 1 else ", ".join(f"{p} {DTYPE_NAMES[d]}" for p, d in self.frozen_weights)
        return (f"Whisper {'30 s' if self.pad_to_30s else 'any length'}, {self.attention}, "
                f"{'all' if self.every_position_logits else 'label'} logits, {self.precision}, frozen {frozen}")


FLOAT32_WEIGHTS = tuple((part, torch.float32) for part in ("llm", "audio", "video"))
REFERENCE = Settings(pad_to_30s=True, attention="eager", every_position_logits=True, precision="32-true",
                     frozen_weights=FLOAT32_WEIGHTS)
# The order in which the chain from the reference to the defaults changes the settings, and how
# close the loss must stay across each change (None: it computes something else).
CHANGES = (("attention", SAME_MATH_RTOL), ("every_position_logits", SAME_MATH_RTOL), ("precision", BF16_RTOL),
           ("frozen_weights", BF16_RTOL), ("pad_to_30s", None))


def project_defaults(device: torch.device, precision: str | None = None, frozen: torch.dtype | None = None) -> Settings:
    """configs/model/llama_avsr.yaml with the trainer's default precision, on ``device``;
    ``precision`` and ``frozen`` (every frozen part's dtype) override what the device would get."""
    dtypes = {part: frozen for part in ("llm", "audio", "video")} if frozen else paper_frozen_dtypes(device)
    return Settings(pad_to_30s=bool(PAPER_MODEL["audio_encoder"]["pad_to_30s"]),
                    attention=PAPER_MODEL["llm"]["attn_implementation"], every_position_logits=False,
                    precision=precision or _precision({"accelerator": device.type}),
                    frozen_weights=tuple(dtypes.items()))


def chain(defaults: Settings) -> list[tuple[str, Settings, float | None]]:
    """(name, settings, rtol against the previous one) from the reference to the defaults."""
    steps, current = [("reference", REFERENCE, None)], REFERENCE
    for field, rtol in CHANGES:
        value = getattr(defaults, field)
        if getattr(current, field) != value:
            current = dataclasses.replace(current, **{field: value})
            shown = "/".join(DTYPE_NAMES[d] for _, d in value) if field == "frozen_weights" else value
            steps.append((f"+ {field}={shown}", current, rtol))
    steps[-1] = ("defaults", *steps[-1][1:])
    return steps


def every_position_loss(model, batch: dict, return_attentions: bool) -> torch.Tensor:
    """The reference's loss: logits at every position of the sequence, then CE on the labels."""
    inputs = model.assemble(batch)
    logits = model.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                       position_ids=inputs.position_ids, use_cache=False, output_attentions=return_attentions).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), inputs.labels[:, 1:].flatten(), ignore_index=-100)


def training_step(model, batch: dict, settings: Settings, device: torch.device) -> float:
    """Forward and backward in ``settings``; returns the loss."""
    model.encoders["audio"].pad_to_30s = settings.pad_to_30s
    model.llm.set_attn_implementation(settings.attention)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16-mixed"
                else contextlib.nullcontext())
    with autocast:
        if settings.every_position_logits:
            loss = every_position_loss(model, batch, return_attentions=settings.attention == "eager")
        else:
            loss = model(batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return loss.detach().item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--precision", default=None, help="the defaults' precision (default: the trainer's for the device)")
    parser.add_argument("--frozen-dtype", choices=["float32", "bfloat16"], default=None,
                        help="the defaults' frozen weights (default: the paper config's dtype on the device)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    defaults = project_defaults(device, args.precision, getattr(torch, args.frozen_dtype) if args.frozen_dtype else None)
    model = build_paper_model(SHAPES[args.shapes], args.depth, tuple(args.compression), device=device).train()
    models = {FLOAT32_WEIGHTS: model}  # by frozen weights: the same values, stored in each dtype
    if defaults.frozen_weights != FLOAT32_WEIGHTS:
        models[defaults.frozen_weights] = cast_frozen_weights(copy.deepcopy(model), dict(defaults.frozen_weights))
    batch = llama_avsr_batch(args.max_frames, vocabulary(SHAPES[args.shapes]), device)
    layers = (model.encoders["audio"].encoder.config.encoder_layers, model.encoders["video"].config.layers,
              model.llm.config.num_hidden_layers)
    print(f"{device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads; layers Whisper/AV-HuBERT/Llama "
          f"{layers[0]}/{layers[1]}/{layers[2]}; compression {args.compression[0]},{args.compression[1]}; "
          f"{describe_batch(batch)}")

    failures = []
    print("\nLoss along the chain from the reference to the defaults (same weights, batch and dropout masks):")
    previous = None
    for name, settings, rtol in chain(defaults):
        torch.manual_seed(0)  # the same LoRA dropout masks in every mode
        loss = training_step(models[settings.frozen_weights], batch, settings, device)
        verdict = ""
        if previous is not None:
            difference = abs(loss - previous) / abs(previous)
            if rtol is None:
                verdict = f"relative change {difference:.2e} (other features: not checked)"
            else:
                ok = difference <= rtol
                verdict = f"relative change {difference:.2e} {'<=' if ok else '>'} {rtol:g}: {'same' if ok else 'DIFFERENT'}"
                if not ok:
                    failures.append(name)
        print(f"  {name:34s} {settings.describe():60s} loss {loss:.6f}  {verdict}")
        previous = loss

    timed_modes = {"reference": REFERENCE, "defaults": defaults}
    if defaults.pad_to_30s:  # the project's faster option, off in the paper config
        timed_modes["defaults, any-length Whisper"] = dataclasses.replace(defaults, pad_to_30s=False)
    steps = {name: (lambda s=s: training_step(models[s.frozen_weights], batch, s, device)) for name, s in timed_modes.items()}
    times = interleaved_times(steps, args.repeats, device)
    weights = {name: weight_bytes(models[s.frozen_weights]) for name, s in timed_modes.items()}
    memory = {name: weights[name] + peak_bytes(step, device) for name, step in steps.items()}
    fastest = {name: min(t) for name, t in times.items()}
    print(f"\n| mode | settings | s/step (fastest of {args.repeats}) | weights + step's peak | speed-up vs reference | "
          "memory vs reference |\n|---|---|---|---|---|---|")
    for name, settings in timed_modes.items():
        print(f"| {name} | {settings.describe()} | {fastest[name]:.3f} | {mib(weights[name])} + "
              f"{mib(memory[name] - weights[name])} | {fastest['reference'] / fastest[name]:.2f}x | "
              f"{memory[name] / memory['reference']:.2f} |")
    print("\n" + "; ".join(f"{name} vs reference: {fastest['reference'] / fastest[name]:.2f}x faster, "
                            f"{memory[name] / memory['reference']:.2f}x the memory" for name in list(timed_modes)[1:]))
    if failures:
        print(f"\nFAILED: the loss changed beyond float tolerance at {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
