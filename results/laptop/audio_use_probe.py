"""Does a trained laptop model use its audio? Three numbers from one checkpoint.

    python results/laptop/audio_use_probe.py CKPT [--n 16] [--out FILE.json]

On the first N training utterances (one evaluation batch, live Whisper): the LLM's CE with each
utterance's own audio and with the next utterance's audio (equal: the audio is not used); the
mean pairwise cosine of the projected audio tokens against that of the Whisper features they
come from; and the norm of the projected tokens' mean vector over their mean norm (near 1: every
token is mostly one shared vector, so the LLM sees nearly the same input for every utterance).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from avsr_sinks.training.checkpoints import load_trained_model  # noqa: E402
from avsr_sinks.training.evaluate import split_loader  # noqa: E402


def mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return float((unit @ unit.T).mean())


def valid_rows(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = torch.arange(features.shape[1])[None, :] < lengths[:, None]
    return features[mask]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, config = load_trained_model(args.ckpt)
    model.eval()
    _, loader = split_loader(config, "train")
    batch = next(iter(loader))
    batch = {k: v[: args.n] for k, v in batch.items()}
    other = {**batch, "audio": batch["audio"].roll(1, 0), "audio_lengths": batch["audio_lengths"].roll(1, 0)}
    with torch.no_grad():
        features, lengths = model.encoders["audio"](batch["audio"], batch["audio_lengths"])
        tokens = model.encode(batch)["audio"]
        projected = valid_rows(tokens.features, tokens.lengths)
        result = {
            "checkpoint": args.ckpt, "utterances": len(batch["text"]),
            "ce_own_audio": float(model(batch).ce), "ce_next_utterances_audio": float(model(other).ce),
            "whisper_mean_pairwise_cosine": mean_pairwise_cosine(valid_rows(features, lengths)),
            "projected_mean_pairwise_cosine": mean_pairwise_cosine(projected),
            "projected_mean_vector_share": float(projected.mean(0).norm() / projected.norm(dim=-1).mean()),
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
