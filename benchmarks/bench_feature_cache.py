"""A λ-sweep training step at the paper's shapes with the frozen encoders' outputs read from the
feature cache (``data.feature_cache``) vs computed live, side by side in one process.

    python benchmarks/bench_feature_cache.py                                # GPU: full depth
    python benchmarks/bench_feature_cache.py --depth 0.125 --max-frames 300   # CPU: layers 3/3/2

Every run of a sweep over λ (the paper's 10, 1e2, 1e4, and the baseline's 0) trains the same
frozen Whisper-medium (30 s padding, as configs/model/llama_avsr.yaml) and AV-HuBERT Large on the
same unaugmented utterances. The cache is built once, with the library's builder, from the
benchmark's batch; the cached step reads those utterances back from it (what the dataset does),
collates them and trains on them. Both steps run the project's defaults with the decorrelation
loss on (λ = ``--decor-lambda``, its hooks on layers 2..L-1). The cached loss must equal the
live one within float16 storage rounding (exit status 1 otherwise). Times are the fastest of
``--repeats`` steps taken in turns. The cache's one-off build encodes each utterance once, as one
live epoch does: it is repaid within about the first epoch, and the sweep's figure includes it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from avsr_sinks.data import collate_samples
from avsr_sinks.data.feature_cache import build_feature_cache, encoder_fingerprint
from bench_train_step import project_defaults, training_step
from paper_shapes import (ROOT, SHAPES, add_model_arguments, build_paper_model, cast_frozen_weights, describe_batch,
                          interleaved_times, llama_avsr_batch, mib, on_device, peak_bytes, vocabulary)

PAPER_EPOCHS = int(OmegaConf.load(ROOT / "configs/trainer/gpu.yaml").max_epochs)
CACHE_RTOL = 1e-3  # float16 keeps ~3 significant digits of each O(1) feature


def build_caches(model, batch: dict, folder: Path) -> dict:
    """{modality: FeatureCache} of the batch's utterances, built as ``data.feature_cache`` builds them."""
    caches = {}
    for modality in model.modalities:
        encoder = model.encoders[modality]
        fingerprint, description = encoder_fingerprint(encoder, {"benchmark": "random paper-shape inputs"})

        def encode(b: dict, modality=modality, encoder=encoder):
            return encoder(**{modality: b[modality], f"{modality}_lengths": b[f"{modality}_lengths"]})

        caches[modality] = build_feature_cache(folder / modality, fingerprint, description, modality, encoder.output_dim,
                                               list(batch["ids"]), lambda done: [batch], encode, log=lambda _: None)
    return caches


def cached_batch(caches: dict, batch: dict, device: torch.device) -> dict:
    """The batch as the dataset gives it with every modality cached: features read per utterance, collated."""
    samples = [{"id": utterance, "text": text, **{f"{m}_features": cache.features(utterance) for m, cache in caches.items()}}
               for utterance, text in zip(batch["ids"], batch["text"])]
    return on_device(collate_samples(samples), device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--decor-lambda", type=float, default=100.0)
    parser.add_argument("--sweep-runs", type=int, default=4, help="runs of the sweep (the paper: λ = 0, 10, 1e2, 1e4)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    defaults = project_defaults(device)
    model = build_paper_model(SHAPES[args.shapes], args.depth, tuple(args.compression), decor_lambda=args.decor_lambda,
                              device=device).train()
    cast_frozen_weights(model, dict(defaults.frozen_weights))
    batch = llama_avsr_batch(args.max_frames, vocabulary(SHAPES[args.shapes]), device)
    print(f"{device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads; layers Whisper/AV-HuBERT/Llama "
          f"{model.encoders['audio'].encoder.config.encoder_layers}/{model.encoders['video'].config.layers}/"
          f"{model.llm.config.num_hidden_layers}; λ = {args.decor_lambda:g}; {describe_batch(batch)}; {defaults.describe()}")

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        caches = build_caches(model, batch, Path(folder))
        build_s = time.perf_counter() - started
        steps = {"live encoders": lambda: training_step(model, batch, defaults, device),
                 "feature cache": lambda: training_step(model, cached_batch(caches, batch, device), defaults, device)}
        losses = {}
        for name, step in steps.items():
            torch.manual_seed(0)  # the same LoRA dropout masks
            losses[name] = step()
        times = interleaved_times(steps, args.repeats, device)
        memory = {name: peak_bytes(step, device) for name, step in steps.items()}
    live, cached = (min(times[name]) for name in steps)
    difference = abs(losses["feature cache"] - losses["live encoders"]) / abs(losses["live encoders"])
    print(f"\n| step | loss | s/step (fastest of {args.repeats}) | peak memory |\n|---|---|---|---|")
    for name in steps:
        print(f"| {name} | {losses[name]:.6f} | {min(times[name]):.3f} | {mib(memory[name])} |")
    # Per batch of the corpus: the build encodes it once, each epoch of each run trains on it once.
    sweep_steps = args.sweep_runs * PAPER_EPOCHS
    print(f"\nspeed-up with the cache: {live / cached:.2f}x a step; building it took {build_s:.2f} s for the batch "
          f"({build_s / len(batch['ids']):.3f} s an utterance), repaid after {build_s / max(live - cached, 1e-9):.1f} "
          f"epochs; a sweep of {args.sweep_runs} runs x {PAPER_EPOCHS} epochs (configs/trainer/gpu.yaml): "
          f"{sweep_steps * live / (build_s + sweep_steps * cached):.2f}x faster with the cache, its build included")
    ok = difference <= CACHE_RTOL
    print(f"loss from the cache vs live: relative change {difference:.2e} {'<=' if ok else '>'} {CACHE_RTOL:g}: "
          f"{'same' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
