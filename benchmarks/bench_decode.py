"""Batched beam search vs batch 1 on the same utterances with the same beams, side by side in
one process, with the prompt prefilled once per utterance (``LlamaAVSR.generate``) and once per
beam (Hugging Face's ``generate`` as it comes, the code before that change).

    python benchmarks/bench_decode.py --ckpt outputs/train/<run>/checkpoints/last.ckpt [--utterances 200]

The utterances are the first ``--utterances`` of the checkpoint's test split, loaded once into
memory; batched decoding cuts them into the evaluation's frame-budget batches (``data.eval_max_frames``,
sorted by length), batch 1 decodes them one at a time. Each pass decodes them all (encoders
included); passes alternate between the modes, and each mode's time is its fastest of
``--repeats`` (a separate pass of ``LlamaAVSR.encode`` alone, encoders to projectors, says how
much of it the encoding takes). Hypotheses that differ between batched and batch-1 decoding are
scored on their utterance alone (the beam score: log-probability per generated token, EOS
included): a difference where the two scores are within float rounding of each other is a
near-tie that padding's other summation order decided.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
from torch.utils.data import Subset

import avsr_sinks.model.avsr as avsr_module
from avsr_sinks.data import FrameBudgetBatchSampler, collate_samples
from avsr_sinks.model.avsr import GenerationSettings
from avsr_sinks.training.checkpoints import load_trained_model
from avsr_sinks.training.evaluate import generation_settings, split_loader
from paper_shapes import on_device, timed

NEAR_TIE = 1e-3  # beam scores (mean log-probability) this close are decided by float rounding


@contextlib.contextmanager
def prefill_per_beam():
    """``LlamaAVSR.generate`` as it was before it prefilled once per utterance."""
    patched = avsr_module.prefill_once_per_utterance
    avsr_module.prefill_once_per_utterance = lambda causal_lm, num_beams: contextlib.nullcontext()
    try:
        yield
    finally:
        avsr_module.prefill_once_per_utterance = patched


def decode(model, batches: list[dict], settings: GenerationSettings) -> list[str]:
    return [hypothesis for batch in batches for hypothesis in model.generate(batch, settings)]


@torch.no_grad()
def beam_score(model, batch: dict, hypothesis: str, length_penalty: float) -> float:
    """Sum of the hypothesis's token log-probabilities (EOS included) over its length ** penalty."""
    out = model({**batch, "text": [hypothesis]})
    return float(-out.ce * out.num_tokens / out.num_tokens ** length_penalty)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--beams", type=int, default=None, help="default: the checkpoint's generation.num_beams")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model, config = load_trained_model(args.ckpt)
    model.to(device).eval()
    settings = generation_settings({**config["generation"], **({"num_beams": args.beams} if args.beams else {})}, config)
    dataset, _ = split_loader(config, "test")
    chosen = list(range(min(args.utterances, len(dataset))))
    samples = [dataset[i] for i in chosen]

    sampler = FrameBudgetBatchSampler([dataset.lengths[i] for i in chosen], config["data"]["eval_max_frames"],
                                      shuffle=False, num_replicas=1, rank=0)
    layouts = {"batched": [on_device(collate_samples([samples[i] for i in batch]), device) for batch in sampler],
               "batch 1": [on_device(collate_samples([sample]), device) for sample in samples]}
    order = {name: [u for batch in batches for u in batch["ids"]] for name, batches in layouts.items()}
    sizes = [len(b["ids"]) for b in layouts["batched"]]
    print(f"{device.type}, {torch.get_num_threads()} threads; {len(samples)} test utterances, {settings.num_beams} beams, "
          f"max {settings.max_new_tokens} new tokens; batched: {len(sizes)} batches of {min(sizes)}-{max(sizes)}")

    modes = {(layout, prefill): batches for layout, batches in layouts.items() for prefill in ("per utterance", "per beam")}
    hypotheses, times = {}, {mode: [] for mode in modes}
    encoder_times = {layout: [] for layout in layouts}

    def run(mode) -> tuple[list[str], float]:
        result = []
        with prefill_per_beam() if mode[1] == "per beam" else contextlib.nullcontext():
            seconds = timed(lambda: result.extend(decode(model, modes[mode], settings)), device)
        return result, seconds

    with torch.no_grad():
        for mode in modes:  # untimed: every batch shape once (allocator, kernels)
            hypotheses[mode] = dict(zip(order[mode[0]], run(mode)[0]))
        for _ in range(args.repeats):
            for mode in modes:
                times[mode].append(run(mode)[1])
            for layout, batches in layouts.items():
                encoder_times[layout].append(timed(lambda batches=batches: [model.encode(b) for b in batches], device))

    print(f"\n| decoding | prefill | s for {len(samples)} utterances (fastest of {args.repeats}) | of which encoding | "
          "utterances/s | batched vs batch 1 |\n|---|---|---|---|---|---|")
    for (layout, prefill), t in times.items():
        speed_up = min(times[("batch 1", prefill)]) / min(t)
        print(f"| {layout} | once {prefill} | {min(t):.2f} | {min(encoder_times[layout]):.2f} | "
              f"{len(samples) / min(t):.1f} | {speed_up:.2f}x |")
    for layout in layouts:
        before, after = min(times[(layout, "per beam")]), min(times[(layout, "per utterance")])
        print(f"{layout}: prefilling once per utterance is {before / after:.2f}x faster than once per beam")

    differences = {}
    for first, second in ((("batched", "per utterance"), ("batch 1", "per utterance")),
                          (("batched", "per utterance"), ("batched", "per beam"))):
        differing = [u for u in hypotheses[first] if hypotheses[first][u] != hypotheses[second][u]]
        differences[second] = len(differing)
        print(f"\nhypotheses {first[0]}/prefill {first[1]} vs {second[0]}/prefill {second[1]}: "
              f"{len(differing)} of {len(samples)} differ")
        for utterance in differing:
            alone = on_device(collate_samples([samples[order['batch 1'].index(utterance)]]), device)
            scores = [beam_score(model, alone, hypotheses[mode][utterance], settings.length_penalty)
                      for mode in (first, second)]
            kind = "near-tie" if abs(scores[0] - scores[1]) <= NEAR_TIE else "NOT a near-tie"
            print(f"  {utterance}: {hypotheses[first][utterance]!r} (score {scores[0]:.5f}) vs "
                  f"{hypotheses[second][utterance]!r} (score {scores[1]:.5f}): {kind}")
    batched, alone = (len(samples) / min(times[(layout, "per utterance")]) for layout in layouts)
    print(f"\nbatched {batched:.1f} utterances/s vs batch 1 {alone:.1f} ({batched / alone:.2f}x), "
          f"{differences[('batch 1', 'per utterance')]} of {len(samples)} hypotheses differ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
