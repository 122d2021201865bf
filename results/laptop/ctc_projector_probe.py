"""How fast can the projector alone learn to spell the words in SmolLM2's own token embeddings?

    python results/laptop/ctc_projector_probe.py [--steps 1500] [--lr 1e-3] [--n-test 100] [--num-layers N]
        [--whisper base] [--more-voices --n-train 30000 --encode 6000] [--mask-window 20]

The laptop recipe's projector (avg-pool 4 + Linear-ReLU-Linear, as experiment=laptop_asr) on the
frozen Whisper tiny.en features (encoded once, held in memory; --num-layers N: the output of its
N-th layer, as model.audio_encoder.num_layers; --whisper base: Whisper base's encoder instead,
from python scripts/install_weights.py --whisper-base; --more-voices --n-train: the corpus of
experiment=laptop_asr, of which --encode N training utterances are encoded; --mask-window W: in training only, one span of up
to W encoder frames (20 ms each) zeroed per --mask-stride frames, auto_avsr's time masking rule
applied to the frozen features instead of the waveform), trained with nothing but the
CTC of model.projector.ctc_weight (avsr_sinks/model/alignment.py): each projected token scored
against SmolLM2's frozen embedding rows and a blank. No LLM runs, so a step costs a small share of
a training step. Greedy CTC decoding (best class per token, repeats merged, blanks dropped, the
tokens detokenised) gives a WER on held-out-voice test utterances, before and every --every
steps: how much of the transcript the projected tokens spell, in the LLM's input space, before
the LLM reads them. Writes results/laptop/ctc_projector_probe[_c<rate>][_layers<N>][_<whisper>][_train<n>_more_voices][_mask<W>of<S>].json.
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
from avsr_sinks.data.espeak_corpus import MORE_TRAIN_VOICES, EspeakCorpusConfig, ensure_espeak_corpus  # noqa: E402
from avsr_sinks.data.transforms import time_mask_  # noqa: E402
from avsr_sinks.encoders import WhisperEncoder  # noqa: E402
from avsr_sinks.evaluation.wer import normalize_text  # noqa: E402
from avsr_sinks.model.alignment import embedding_ctc_loss  # noqa: E402
from avsr_sinks.model.compressor import build_compressor  # noqa: E402
from avsr_sinks.model.projector import build_projector  # noqa: E402
from whisper_decoder_probe import live_features  # noqa: E402


def greedy_ctc_texts(features, lengths, embeddings, blank, tokenizer) -> list[str]:
    classes = torch.cat([embeddings, blank[None]])
    best = (features @ classes.T).argmax(-1)
    texts = []
    for row, n in zip(best, lengths):
        ids = row[: int(n)].tolist()
        kept = [t for i, t in enumerate(ids) if (i == 0 or t != ids[i - 1]) and t != len(embeddings)]
        texts.append(tokenizer.decode(kept))
    return texts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-frames", type=int, default=400, help="frame budget of a batch (laptop_asr's)")
    parser.add_argument("--compression", type=int, default=4)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--num-layers", type=int, default=None, help="Whisper encoder layers to run (default: all)")
    parser.add_argument("--whisper", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--more-voices", action="store_true", help="the 90 training voices of experiment=laptop_asr")
    parser.add_argument("--n-train", type=int, default=3000, help="training sentences of the corpus")
    parser.add_argument("--encode", type=int, default=None, help="training utterances encoded (default: all)")
    parser.add_argument("--mask-window", type=int, default=0, help="widest time mask, in encoder frames (0: none)")
    parser.add_argument("--mask-stride", type=int, default=50, help="encoder frames per time mask (50: one a second)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir = Path(os.environ.get("AVSR_SINKS_CACHE") or "~/.cache/avsr_sinks").expanduser()
    llm_dir = cache_dir / "weights" / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    embeddings = AutoModelForCausalLM.from_pretrained(llm_dir).get_input_embeddings().weight.detach()
    voices = {"train_voices": MORE_TRAIN_VOICES} if args.more_voices else {}
    corpus = ensure_espeak_corpus(cache_dir / "espeak", EspeakCorpusConfig(n_train=args.n_train, **voices))
    encoder = WhisperEncoder.from_pretrained(str(cache_dir / "weights" / f"whisper-{args.whisper}"),
                                             pad_to_30s=False, num_layers=args.num_layers)
    rows = AVSRDataset(corpus.root, corpus.train_csv, modalities=("audio",), augment=False).rows
    rows = rows[: args.encode or len(rows)]
    encode_started = time.perf_counter()
    train = [features.half() for _, features in live_features(encoder, corpus.train_csv, corpus.root, len(rows))]
    print(f"encoded {len(train)} training utterances in {(time.perf_counter() - encode_started) / 60:.1f} min",
          flush=True)
    masks = torch.Generator().manual_seed(0)
    test = live_features(encoder, corpus.test_csv, corpus.root, args.n_test)
    compressor = build_compressor("avg-pool", args.compression)
    projector = build_projector("mlp", compressor.output_dim(encoder.output_dim), embeddings.shape[1])
    blank = torch.nn.Parameter(torch.zeros(embeddings.shape[1]))
    optimizer = torch.optim.AdamW([*projector.parameters(), blank], lr=args.lr, weight_decay=0.01)

    def project(features: list[torch.Tensor]):
        padded = pad_sequence(features, batch_first=True)
        pooled, lengths = compressor(padded, torch.tensor([len(f) for f in features]))
        return projector(pooled), lengths

    def test_wer() -> float:
        with torch.no_grad():
            tokens, lengths = project([f for _, f in test])
            hyps = greedy_ctc_texts(tokens, lengths, embeddings, blank, tokenizer)
        return jiwer.wer([normalize_text(t) for t, _ in test], [normalize_text(h) or "<empty>" for h in hyps])

    sampler = FrameBudgetBatchSampler([r.n_frames for r in rows], args.max_frames, shuffle=True, seed=1234,
                                      num_replicas=1, rank=0)
    curve = [[0, test_wer()]]
    print(f"step 0: test WER {100 * curve[-1][1]:.1f} %", flush=True)
    step, epoch, started = 0, 0, time.perf_counter()
    while step < args.steps:
        sampler.set_epoch(epoch)
        for indices in sampler:
            tokens, lengths = project([time_mask_(train[i].float(), args.mask_window, args.mask_stride, masks)
                                       for i in indices])
            targets = [tokenizer(rows[i].transcript, add_special_tokens=False).input_ids for i in indices]
            loss = embedding_ctc_loss(tokens, lengths, embeddings, blank, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % args.every == 0 or step == args.steps:
                curve.append([step, test_wer()])
                print(f"step {step}: CTC {loss.item():.3f}, test WER {100 * curve[-1][1]:.1f} % "
                      f"({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
            if step >= args.steps:
                break
        epoch += 1
    result = {"steps": args.steps, "lr": args.lr, "max_frames": args.max_frames, "compression": args.compression,
              "whisper": args.whisper, "whisper_layers": encoder.encoder.config.encoder_layers,
              "n_train": args.n_train, "train_voices": len(voices.get("train_voices", ())) or "default",
              "train_utterances": len(train), "mask_window": args.mask_window, "mask_stride": args.mask_stride,
              "test_utterances": len(test), "test_wer_curve": curve, "minutes": (time.perf_counter() - started) / 60}
    name = ("ctc_projector_probe" + ("" if args.compression == 4 else f"_c{args.compression}")
            + ("" if args.num_layers is None else f"_layers{args.num_layers}")
            + ("" if args.whisper == "tiny.en" else f"_{args.whisper}")
            + (f"_train{args.n_train}_more_voices" if args.more_voices else "")
            + (f"_mask{args.mask_window}of{args.mask_stride}" if args.mask_window else ""))
    (Path(__file__).parent / f"{name}.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
