"""Several processes (DDP, gloo on CPU) train and evaluate as one (issues 20 and 21).

Every trainable parameter must take part in every step (DDP stops at its second step on one that
does not), and the test and validation WERs must cover their whole split, each utterance once.
The numbers checked are derived here: jiwer on the written CSVs, the split's ids from its label
CSV, a one-process decode of the same checkpoint, and a validation WER pooled by hand.
"""

import csv
import json
import os
import subprocess
import sys

import jiwer
import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from avsr_sinks.data import FrameBudgetBatchSampler, collate_samples
from avsr_sinks.encoders import AVHubertConfig, AVHubertEncoder
from avsr_sinks.evaluation.runner import merge_shards
from avsr_sinks.model.avsr import GenerationSettings, LossOutput
from avsr_sinks.training.checkpoints import load_trained_model
from avsr_sinks.training.datamodule import resolve_corpus
from avsr_sinks.training.evaluate import evaluate_checkpoint
from avsr_sinks.training.module import AVSRModule, OptimSettings
from test_end_to_end import ROOT, TINY, _compose

# 29 test utterances: the ranks' shards differ in size. 40 training utterances in batches of at
# most 200 frames: at least 3 optimizer steps per rank, and DDP checks unused parameters from the second.
SPLITS = ["data.synthetic.n_train=40", "data.synthetic.n_val=10", "data.synthetic.n_test=29"]
TWO_PROCESSES = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _cli(tmp_path, script, *overrides):
    command = [sys.executable, str(ROOT / "scripts" / script), *overrides]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _label_ids(cfg, split):
    with open(resolve_corpus(cfg["data"])[f"{split}_csv"]) as handle:
        return [f"{row[0]}/{row[1]}" for row in csv.reader(handle)]


def test_two_processes_train_the_demo_encoders_and_test_every_utterance_once(tmp_path):
    cache = [f"data.cache_dir={tmp_path / 'cache'}"]
    # The decoding limit is left to the training data (generation.max_new_tokens null).
    tiny = [o for o in TINY if not o.startswith("generation.max_new_tokens")]
    run = tmp_path / "ddp"
    done = _cli(tmp_path, "train.py", *tiny, *SPLITS, *cache, *TWO_PROCESSES, "trainer.max_epochs=1", "run_test=true",
                f"hydra.run.dir={run}")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] >= 3  # optimizer steps of each rank
    saved = set(checkpoint["state_dict"])
    assert any(".encoders.video.feature_extractor_video." in key for key in saved)  # the video encoder trains
    assert not any("feature_extractor_audio" in key for key in saved)  # its audio front-end, never read, does not

    cfg = _compose("train", [*tiny, *SPLITS, *cache, "output_dir=unused"])
    test_ids = _label_ids(cfg, "test")
    rows = _rows(run / "eval" / "test_utterances.csv")
    assert sorted(r["id"] for r in rows) == sorted(test_ids)  # every test utterance, each once
    reported = json.loads((run / "eval" / "test_wer.json").read_text())
    wer = jiwer.wer([r["reference"] for r in rows], [r["hypothesis"] or "" for r in rows])
    assert reported["wer"] == pytest.approx(wer)
    assert (reported["utterances"], reported["skipped"], reported["filtered"]) == (len(test_ids), 0, 0)
    assert f"over {len(test_ids)} utterances (0 skipped" in done.stdout

    # The limit fits the training transcripts, and a hypothesis cut by it is reported.
    model, config = load_trained_model(run / "checkpoints" / "last.ckpt")
    with open(resolve_corpus(cfg["data"])["train_csv"]) as handle:
        longest = max(len(model.tokenizer(row[-1], add_special_tokens=False).input_ids) for row in csv.reader(handle))
    assert config["generation"]["max_new_tokens"] > longest + 1
    assert ("hypotheses stopped at generation.max_new_tokens" in done.stderr) == (reported["at_token_limit"] > 0)

    # One process decodes the same checkpoint as the two did.
    ckpt = run / "checkpoints" / "last.ckpt"
    single = evaluate_checkpoint(_compose("eval", [f"ckpt={ckpt}", "generation.num_beams=2", "device=cpu",
                                                   f"output_dir={tmp_path / 'eval1'}"]))
    single_rows = _rows(tmp_path / "eval1" / "test_clean_utterances.csv")
    assert single["rows"][0]["wer"] == pytest.approx(reported["wer"])
    assert {r["id"]: r["hypothesis"] for r in single_rows} == {r["id"]: r["hypothesis"] for r in rows}

    # eval.py on two processes gives the table and the utterances of one.
    _cli(tmp_path, "eval.py", f"ckpt={ckpt}", "generation.num_beams=2", "device=cpu", "trainer.devices=2",
         f"hydra.run.dir={tmp_path / 'eval2'}")
    double = json.loads((tmp_path / "eval2" / "wer_table.json").read_text())
    assert double["rows"] == single["rows"]
    assert _rows(tmp_path / "eval2" / "test_clean_utterances.csv") == single_rows


def _frozen_encoder_files(tmp_path):
    """A random Whisper folder and an AV-HuBERT checkpoint with the official layout."""
    torch.manual_seed(0)
    whisper = tmp_path / "whisper"
    config = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, vocab_size=100,
                           max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    WhisperModel(config).save_pretrained(whisper)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(whisper)
    avhubert = AVHubertEncoder(AVHubertConfig(layers=1, dim=16, heads=2, ffn_dim=32, resnet_widths=(2, 2, 4, 4), conv_pos=4,
                                              conv_pos_groups=2), modality="audiovisual")
    cfg = {"model": {"encoder_layers": 1, "encoder_embed_dim": 16, "encoder_attention_heads": 2, "encoder_ffn_embed_dim": 32,
                     "conv_pos": 4, "conv_pos_groups": 2, "encoder_layerdrop": 0.05}}
    torch.save({"cfg": cfg, "model": avhubert.state_dict()}, tmp_path / "avhubert.pt")
    return whisper, tmp_path / "avhubert.pt"


def test_two_processes_train_lora_on_frozen_encoders_as_the_paper_configs(tmp_path):
    whisper, avhubert = _frozen_encoder_files(tmp_path)
    run = tmp_path / "ddp"
    _cli(tmp_path, "train.py", *TINY, *SPLITS, f"data.cache_dir={tmp_path / 'cache'}", *TWO_PROCESSES, "trainer.max_epochs=1",
         "run_test=false", f"model.audio_encoder.path={whisper}", "model.audio_encoder.trainable=false",
         "model.audio_encoder.pad_to_30s=true", f"model.video_encoder.checkpoint={avhubert}", "model.video_encoder.trainable=false",
         "model.video_encoder.lora={rank: 2, alpha: 4, dropout: 0.0}", "model.llm.lora.target_modules=[q_proj,v_proj]",
         f"hydra.run.dir={run}")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] >= 3
    state = checkpoint["state_dict"]
    encoder_keys = [key for key in state if ".encoders." in key]
    assert encoder_keys and all("lora_" in key for key in encoder_keys)  # the frozen encoders' weights stay out
    assert all(state[key].abs().sum() > 0 for key in encoder_keys if "lora_B" in key)  # their LoRA trained (B starts at 0)


def test_merged_shards_give_the_one_process_order_each_utterance_once():
    lengths = [int(n) for n in torch.randint(5, 40, (23,), generator=torch.Generator().manual_seed(0))]

    def shard(rank, replicas, indices):
        sampler = FrameBudgetBatchSampler([lengths[i] for i in indices], 60, shuffle=False, num_replicas=replicas, rank=rank)
        return [tuple([f"u{indices[i]}" for i in batch] for _ in range(3)) + ([False] * len(batch),) for batch in sampler]

    everything = list(range(23))
    one_process = [u for batch in shard(0, 1, everything) for u in batch[0]]
    merged = merge_shards([shard(0, 2, everything), shard(1, 2, everything)])
    assert [u[0] for u in merged] == one_process
    # Fewer utterances than ranks: the sampler repeats a batch, the merge keeps one.
    assert [u[0] for u in merge_shards([shard(r, 3, [4]) for r in range(3)])] == ["u4"]


# Validation: a model that scripts its hypotheses, so that the WER of the whole split is known here.
UTTERANCES = [{"id": f"v{i:02d}", "text": " ".join(f"w{j}" for j in range(1 + 2 * (i % 4)))} for i in range(10)]
LENGTHS = [10 + 3 * (i % 4) for i in range(10)]
MAX_FRAMES = 40  # 4 batches


def _scripted_hypothesis(index, text):
    words = text.split()
    if index % 3 == 0:  # one substitution
        words[0] = "x"
    if index % 2:  # one deletion
        words = words[:-1]
    return " ".join(words)


class ScriptedModel(nn.Module):
    ctc_warmup_steps = 0  # as LlamaAVSR without model.projector.ctc_warmup_steps

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        loss = self.weight * len(batch["text"])
        return LossOutput(loss, loss, None, len(batch["text"]))

    def generate(self, batch, settings):
        return [_scripted_hypothesis(int(uid[1:]), text) for uid, text in zip(batch["ids"], batch["text"])]


class ScriptedData(L.LightningDataModule):
    def val_dataloader(self):  # built in each process, after the process group: the sampler shards by rank
        return DataLoader(UTTERANCES, batch_sampler=FrameBudgetBatchSampler(LENGTHS, MAX_FRAMES, shuffle=False), collate_fn=collate_samples)


def _validation_wer(budget):
    module = AVSRModule(ScriptedModel(), OptimSettings(), GenerationSettings(), val_generation_batches=budget)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
    return trainer.validate(module, datamodule=ScriptedData())[0]["val/wer"]


def test_validation_wer_over_two_processes_pools_errors_and_words():
    refs = {u["id"]: u["text"] for u in UTTERANCES}
    hyps = {u["id"]: _scripted_hypothesis(i, u["text"]) for i, u in enumerate(UTTERANCES)}
    shards = [[u for batch in FrameBudgetBatchSampler(LENGTHS, MAX_FRAMES, shuffle=False, num_replicas=2, rank=r) for u in batch]
              for r in range(2)]
    per_rank = [jiwer.wer([refs[f"v{i:02d}"] for i in s], [hyps[f"v{i:02d}"] for i in s]) for s in shards]
    whole = jiwer.wer(list(refs.values()), list(hyps.values()))
    assert abs(sum(per_rank) / 2 - whole) > 0.015  # a mean of per-rank WERs would be caught
    assert _validation_wer(budget=100) == pytest.approx(whole)
    # A budget of 3 batches counts batches of the whole split: rank r's batch i is batch 2 i + r.
    first = [u for r in range(2)
             for i, batch in enumerate(FrameBudgetBatchSampler(LENGTHS, MAX_FRAMES, shuffle=False, num_replicas=2, rank=r))
             if 2 * i + r < 3 for u in batch]
    assert _validation_wer(budget=3) == pytest.approx(jiwer.wer([refs[f"v{i:02d}"] for i in first],
                                                                [hyps[f"v{i:02d}"] for i in first]))


def test_hypotheses_cut_by_the_token_limit_are_flagged(tiny_llm, monkeypatch):
    from avsr_sinks.model.avsr import LlamaAVSR
    from conftest import FrameEncoder

    llm, tokenizer, special = tiny_llm
    model = LlamaAVSR(llm, tokenizer, special, "asr", [2], audio_encoder=FrameEncoder("audio", hop=100).requires_grad_(False))
    one, two = tokenizer("one two", add_special_tokens=False).input_ids
    batch = {"audio": torch.randn(2, 300), "audio_lengths": torch.tensor([300, 300]), "text": ["", ""], "ids": ["a", "b"]}
    # What beam search returns: the new tokens, padded after the EOS of a hypothesis that ended.
    outputs = {3: [[one, special.eos, special.pad], [one, two, one]], 4: [[one, special.eos, special.pad], [one, two, one]]}
    for limit, rows in outputs.items():
        monkeypatch.setattr(model.llm, "generate", lambda **kwargs: torch.tensor(rows))
        hypotheses = model.generate_hypotheses(batch, GenerationSettings(num_beams=1, max_new_tokens=limit))
        assert hypotheses.texts == ["one", "one two one"]
        assert hypotheses.at_token_limit == [False, limit == 3]  # under a limit of 4 both ended by themselves
