"""Do frozen Whisper features carry espeak's words? Fine-tune Whisper's own decoder on them.

    python results/laptop/whisper_decoder_probe.py [--steps 600] [--lr 1e-4] [--n-test 100]

The laptop recipe reads frozen Whisper tiny.en features through a projector and a LoRA-tuned
SmolLM2. This probe keeps the same frozen features (read from the laptop run's feature cache,
built by the first `experiment=laptop_asr` run) and the same training batches (frame budget
data.max_frames of the preset), and trains Whisper's decoder instead of projector + LLM: the
decoder already knows how to read these features, so its learning curve shows how much of the
espeak transcripts the frozen features hold, and how fast a reader that starts aligned learns.
Greedy test WER on the first N test utterances (held-out voices, encoded here) before and every
150 steps.
Writes results/laptop/whisper_decoder_probe.json (whisper_decoder_probe_train30000.json with
--n-train 30000, the 10x corpus, whose batches are encoded here when no cache holds them;
_more_voices with --more-voices, _<N>steps with --steps other than 600).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jiwer
import torch
from torch.nn.utils.rnn import pad_sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from avsr_sinks.data import AVSRDataset, FrameBudgetBatchSampler  # noqa: E402
from avsr_sinks.data.espeak_corpus import (DEFAULT_TRAIN_VOICES, MORE_TRAIN_VOICES,  # noqa: E402
                                           EspeakCorpusConfig, ensure_espeak_corpus)
from avsr_sinks.data.feature_cache import FeatureCache, FeatureCacheError, cache_folder, encoder_fingerprint  # noqa: E402
from avsr_sinks.encoders import WhisperEncoder  # noqa: E402
from avsr_sinks.evaluation.wer import normalize_text  # noqa: E402
from avsr_sinks.training.feature_caches import preprocessing  # noqa: E402

def open_cache(cache_dir: Path, encoder: WhisperEncoder, root: Path) -> FeatureCache:
    fingerprint, _ = encoder_fingerprint(encoder, preprocessing("audio", root))
    folder = cache_folder(cache_dir / "features", "audio", fingerprint)
    return FeatureCache.open(folder, fingerprint, require_complete=False)


def live_features(encoder: WhisperEncoder, test_csv: Path, root: Path, n: int) -> list[tuple[str, torch.Tensor]]:
    """(transcript, features) of the first ``n`` test utterances, encoded here (equal to what the
    cache would hold: tests/test_feature_cache.py)."""
    dataset = AVSRDataset(root, test_csv, modalities=("audio",), split="test", augment=False)
    out = []
    with torch.no_grad():
        for i in range(min(n, len(dataset))):
            audio = dataset[i]["audio"][None]
            features, lengths = encoder(audio, torch.tensor([audio.shape[1]]))
            out.append((dataset.rows[i].transcript, features[0, : int(lengths[0])]))
    return out


def decode(model, tokenizer, test: list[tuple[str, torch.Tensor]], batch: int = 16) -> float:
    from transformers.modeling_outputs import BaseModelOutput

    model.eval()
    refs, hyps = [], []
    for start in range(0, len(test), batch):
        chunk = test[start:start + batch]
        features = [f for _, f in chunk]
        longest = max(len(f) for f in features)
        # Zero frames after the shorter ones, as the encoder's padding; the decoder attends to them.
        padded = torch.stack([torch.nn.functional.pad(f, (0, 0, 0, longest - len(f))) for f in features])
        with torch.no_grad():
            out = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=padded), max_new_tokens=48,
                                 num_beams=1, do_sample=False)
        hyps += [normalize_text(t) or "<empty>" for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
        refs += [normalize_text(text) for text, _ in chunk]
    model.train()
    return jiwer.wer(refs, hyps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-frames", type=int, default=400, help="frame budget of a batch (laptop_asr's)")
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--n-train", type=int, default=3000,
                        help="training sentences of the espeak corpus (30000: the 10x corpus); utterances "
                             "missing from the feature cache are encoded here")
    parser.add_argument("--more-voices", action="store_true",
                        help="train on the training accents with every espeak-ng variant the test voices do not use "
                             f"({len(MORE_TRAIN_VOICES)} voices instead of {len(DEFAULT_TRAIN_VOICES)}); the test voices stay unseen")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    cache_dir = Path(os.environ.get("AVSR_SINKS_CACHE") or "~/.cache/avsr_sinks").expanduser()
    whisper = cache_dir / "weights" / "whisper-tiny.en"
    voices = {"train_voices": MORE_TRAIN_VOICES} if args.more_voices else {}
    corpus = ensure_espeak_corpus(cache_dir / "espeak", EspeakCorpusConfig(n_train=args.n_train, **voices))
    encoder = WhisperEncoder.from_pretrained(str(whisper), pad_to_30s=False)
    try:
        cache = open_cache(cache_dir, encoder, corpus.root)
    except FeatureCacheError:
        cache = None  # no laptop run has cached this corpus: encode every batch here
    train_set = AVSRDataset(corpus.root, corpus.train_csv, modalities=("audio",), augment=False)
    train_rows = train_set.rows

    def train_features(indices: list[int]) -> list[torch.Tensor]:
        if cache is not None and all(train_rows[i].utterance_id in cache for i in indices):
            return [cache.features(train_rows[i].utterance_id).float() for i in indices]
        with torch.no_grad():
            audio = [train_set[i]["audio"] for i in indices]
            features, lengths = encoder(pad_sequence(audio, batch_first=True), torch.tensor([len(a) for a in audio]))
        return [features[k, : int(n)] for k, n in enumerate(lengths)]
    test = live_features(encoder, corpus.test_csv, corpus.root, args.n_test)
    model = WhisperForConditionalGeneration.from_pretrained(whisper)
    tokenizer = WhisperTokenizer.from_pretrained(whisper)
    model.model.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    sampler = FrameBudgetBatchSampler([r.n_frames for r in train_rows], args.max_frames, shuffle=True, seed=1234,
                                      num_replicas=1, rank=0)
    curve = [[0, decode(model, tokenizer, test)]]
    print(f"step 0: test WER {100 * curve[-1][1]:.1f} %", flush=True)
    step, epoch, started = 0, 0, time.perf_counter()
    model.train()
    while step < args.steps:
        sampler.set_epoch(epoch)
        for indices in sampler:
            rows = [train_rows[i] for i in indices]
            features = pad_sequence(train_features(indices), batch_first=True)
            ids = [tokenizer(r.transcript).input_ids for r in rows]  # <|startoftranscript|><|notimestamps|> ... <|endoftext|>
            inputs = pad_sequence([torch.tensor(t[:-1]) for t in ids], batch_first=True,
                                  padding_value=tokenizer.pad_token_id)
            labels = pad_sequence([torch.tensor(t[1:]) for t in ids], batch_first=True, padding_value=-100)
            loss = model(encoder_outputs=(features,), decoder_input_ids=inputs, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % args.every == 0 or step == args.steps:
                curve.append([step, decode(model, tokenizer, test)])
                print(f"step {step}: loss {loss.item():.3f}, test WER {100 * curve[-1][1]:.1f} % "
                      f"({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
            if step >= args.steps:
                break
        epoch += 1
    result = {"n_train": args.n_train, "train_voices": len(voices.get("train_voices", DEFAULT_TRAIN_VOICES)), "steps": args.steps, "lr": args.lr, "max_frames": args.max_frames, "test_utterances": len(test),
              "test_wer_curve": curve, "minutes": (time.perf_counter() - started) / 60}
    name = "whisper_decoder_probe" + ("" if args.n_train == 3000 else f"_train{args.n_train}") + (
        "_more_voices" if args.more_voices else "") + ("" if args.steps == 600 else f"_{args.steps}steps")
    (Path(__file__).parent / f"{name}.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
