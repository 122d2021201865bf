"""Where a training step's time goes: encoders, LLM forward, backward, optimizer (torch.profiler).

    python benchmarks/profile_train_step.py [overrides ...] [--steps 5] [--threads 1]
    python benchmarks/profile_train_step.py experiment=laptop_asr        # SmolLM2-135M + Whisper tiny.en

Builds the model and the training loader of a run config (the same Hydra overrides as
scripts/train.py), runs one untimed step, then profiles ``--steps`` steps with each phase in its
own ``record_function`` scope, and prints each phase's share of the step (wall time of the scope)
and the profiler's top operators. The encoder scope is inside the forward; "LLM forward" is
the forward minus the encoders (assembly, LLM, loss).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avsr_sinks.training.cli_overrides import normalize_overrides  # noqa: E402

PHASES = ("encoders", "forward", "backward", "optimizer")


def build(overrides: list[str]):
    from avsr_sinks.model.tasks import TASK_MODALITIES
    from avsr_sinks.training.build import build_model
    from avsr_sinks.training.datamodule import AVSRDataModule, resolve_corpus
    from avsr_sinks.training.feature_caches import prepare_feature_caches
    from avsr_sinks.training.module import OptimSettings, parameter_groups

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=normalize_overrides([*overrides, "output_dir=outputs/profile"]))
    cfg = OmegaConf.to_container(cfg, resolve=True)
    corpus = resolve_corpus(cfg["data"])
    model = build_model(cfg, corpus["vocabulary"])
    caches = prepare_feature_caches(cfg, model, corpus, ("train",))
    data = AVSRDataModule(cfg["data"], corpus, TASK_MODALITIES[cfg["task"]["name"]], seed=int(cfg["seed"]),
                          feature_caches=caches)
    optim = OptimSettings(**dict(cfg["optim"]))
    optimizer = torch.optim.AdamW(parameter_groups(model, optim), lr=optim.lr, betas=tuple(optim.betas))
    return model.train(), data.train_dataloader(), optimizer


def wrap_forward(module: torch.nn.Module, label: str) -> None:
    forward = module.forward

    def scoped(*args, **kwargs):
        with record_function(label):
            return forward(*args, **kwargs)

    module.forward = scoped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, loader, optimizer = build(args.overrides)
    for encoder in model.encoders.values():
        wrap_forward(encoder, "encoders")
    batches = iter(loader)

    def step(batch):
        with record_function("forward"):
            out = model(batch)
        with record_function("backward"):
            out.loss.backward()
        with record_function("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step(next(batches))  # untimed: first-call allocations and lazy initialisation
    timed = [next(batches) for _ in range(args.steps)]
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])) as prof:
        for batch in timed:
            step(batch)
    wall = time.perf_counter() - started
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in PHASES}
    totals["forward"] -= totals.get("encoders", 0.0)  # the encoder scope is nested in the forward
    step_s = sum(totals.values()) / args.steps
    frames = sum(int(b[m].shape[0] * b[m].shape[1]) for b in timed for m in ("audio", "video") if m in b)
    print(f"{args.steps} steps, {sum(len(b['ids']) for b in timed)} utterances, {frames} padded input samples/frames; "
          f"{wall / args.steps:.3f} s a step (wall, with the profiler), threads={torch.get_num_threads()}")
    print("| phase | s a step | share |\n|---|---|---|")
    for phase, label in zip(PHASES, ("encoders (frozen)", "LLM forward (+ assembly, loss)", "backward", "optimizer")):
        print(f"| {label} | {totals.get(phase, 0.0) / args.steps:.3f} | {100 * totals.get(phase, 0.0) / args.steps / step_s:.1f} % |")
    print("\nTop operators by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
