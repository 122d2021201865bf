"""The projector's CTC against the token embeddings, checked against a brute-force sum over paths."""

import itertools
import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from avsr_sinks.model.alignment import embedding_ctc_loss
from avsr_sinks.model.avsr import GenerationSettings, LlamaAVSR
from avsr_sinks.training.module import AVSRModule, OptimSettings
from conftest import FrameEncoder


def _collapse(path, blank):
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return [c for c in merged if c != blank]


def _brute_force_nll(features, embeddings, blank, target):
    """-log of the summed probability of every frame labelling that collapses to ``target``."""
    classes = torch.cat([embeddings, blank[None]]).double()
    probs = (features.double() @ classes.T).softmax(-1)
    total = 0.0
    for path in itertools.product(range(classes.shape[0]), repeat=features.shape[0]):
        if _collapse(list(path), classes.shape[0] - 1) == target:
            total += math.prod(float(probs[t, c]) for t, c in enumerate(path))
    return -math.log(total)


def test_ctc_equals_the_sum_over_all_alignments():
    torch.manual_seed(0)
    embeddings, blank = torch.randn(3, 4), torch.randn(4)
    features = torch.randn(3, 4, 4)
    lengths = torch.tensor([4, 3, 4])
    targets = [[0, 2], [1], [2, 2]]  # a repeated label needs a blank between its two frames
    expected = sum(_brute_force_nll(features[i, :lengths[i]], embeddings, blank, targets[i]) / len(targets[i])
                   for i in range(3)) / 3
    loss = embedding_ctc_loss(features, lengths, embeddings, blank, targets)
    assert abs(float(loss) - expected) < 1e-5


def test_empty_and_unalignable_transcripts_add_nothing():
    torch.manual_seed(1)
    embeddings, blank = torch.randn(3, 4), torch.randn(4)
    features = torch.randn(2, 3, 4)
    alone = embedding_ctc_loss(features[:1], torch.tensor([3]), embeddings, blank, [[1]])
    with_empty = embedding_ctc_loss(features, torch.tensor([3, 3]), embeddings, blank, [[1], []])
    assert torch.allclose(alone, with_empty)
    # two frames cannot spell three labels: zero loss, not infinity
    assert float(embedding_ctc_loss(features[:1], torch.tensor([2]), embeddings, blank, [[0, 1, 2]])) == 0.0


def _asr_model_and_batch(tiny_llm, **settings):
    llm, tok, special = tiny_llm
    torch.manual_seed(0)
    model = LlamaAVSR(llm, tok, special, "asr", [2], audio_encoder=FrameEncoder("audio", hop=100), **settings)
    batch = {"audio": torch.randn(2, 1200), "audio_lengths": torch.tensor([1200, 800]),
             "text": ["one two three", "red"], "ids": ["a", "b"]}
    return model, batch


def test_model_adds_the_weighted_ctc_and_trains_only_the_projector_path_with_it(tiny_llm):
    llm, tok, special = tiny_llm
    model, batch = _asr_model_and_batch(tiny_llm, projector_ctc_weight=0.5)
    out = model(batch)
    torch.testing.assert_close(out.loss, out.ce + 0.5 * out.ctc)
    tokens = model.encode(batch)["audio"]
    vocabulary = llm.get_input_embeddings().base.weight[:special.added[0]]
    transcripts = [tok(t, add_special_tokens=False).input_ids for t in batch["text"]]
    expected = embedding_ctc_loss(tokens.features, tokens.lengths, vocabulary, model.ctc_blanks["audio"], transcripts)
    torch.testing.assert_close(out.ctc, expected)
    out.ctc.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads["ctc_blanks.audio"] is not None and grads["ctc_blanks.audio"].abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("projectors."))
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if "lora_" in n or "added_rows" in n)


def test_centred_tokens_have_zero_mean_over_each_utterance_and_keep_their_padding():
    from avsr_sinks.model.avsr import center_valid_tokens

    torch.manual_seed(2)
    tokens, lengths = torch.randn(2, 5, 3) + 7.0, torch.tensor([5, 2])
    centred = center_valid_tokens(tokens, lengths)
    for i, n in enumerate(lengths.tolist()):
        by_hand = tokens[i, :n] - sum(tokens[i, t] for t in range(n)) / n
        torch.testing.assert_close(centred[i, :n], by_hand)
    assert torch.equal(centred[1, 2:], tokens[1, 2:])  # padding untouched


def test_model_with_centred_tokens_feeds_the_llm_zero_mean_audio(tiny_llm):
    llm, tok, special = tiny_llm
    model = LlamaAVSR(llm, tok, special, "asr", [2], audio_encoder=FrameEncoder("audio", hop=100),
                      projector_centers_tokens=True)
    batch = {"audio": torch.randn(2, 1200), "audio_lengths": torch.tensor([1200, 800]), "text": ["one", "red"], "ids": ["a", "b"]}
    with torch.no_grad():
        tokens = model.encode(batch)["audio"]
    for i, n in enumerate(tokens.lengths.tolist()):
        assert tokens.features[i, :n].mean(0).abs().max() < 1e-5


def test_ctc_warmup_trains_the_projector_alone_then_the_llm_with_its_own_schedule(tiny_llm):
    """model.projector.ctc_warmup_steps=2: steps 1-2 run no LLM forward and leave LoRA as it was;
    the lr restarts its warm-up at step 3, where LoRA starts to move."""
    llm = tiny_llm[0]
    model, batch = _asr_model_and_batch(tiny_llm, projector_ctc_warmup_steps=2)
    llm_calls = []
    llm.register_forward_hook(lambda *_: llm_calls.append(1))
    snapshots, lrs = [], []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, *_):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_train_batch_end(self, trainer, module, *_):
            snapshots.append(({n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad},
                              len(llm_calls)))

    module = AVSRModule(model, OptimSettings(lr=1e-2, warmup_steps=2), GenerationSettings(num_beams=1, max_new_tokens=2))
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
                        limit_val_batches=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 4, batch_size=None))

    def moved(old, new, part):
        return [n for n in old if part in n and not torch.equal(old[n], new[n])]

    lora = [n for n in before if "lora_" in n]
    assert lora and snapshots[1][1] == 0, "the warm-up steps ran the LLM"
    assert not moved(before, snapshots[1][0], "lora_") and not moved(before, snapshots[1][0], "added_rows")
    assert moved(before, snapshots[1][0], "projectors.") and moved(before, snapshots[1][0], "ctc_blanks")
    assert snapshots[2][1] > 0 and moved(snapshots[1][0], snapshots[3][0], "lora_")
    # warmup_cosine by hand: 2 warm-up steps in each stage; the first stage ends at step 2, the
    # second spans steps 2-3 (its warm-up), the peak lr being 1e-2.
    assert lrs == [pytest.approx(v) for v in (0.5e-2, 1e-2, 0.5e-2, 1e-2)]


def test_validation_during_the_ctc_warmup_scores_the_projector_alone(tiny_llm):
    """Before the LLM has trained, validation runs no LLM (its decodes would run to the token
    limit and say nothing) and logs the projector's CTC; after the first LLM step, the WER."""
    llm = tiny_llm[0]
    model, batch = _asr_model_and_batch(tiny_llm, projector_ctc_warmup_steps=2)
    llm_calls, validations = [], []
    llm.register_forward_hook(lambda *_: llm_calls.append(1))

    class Record(L.Callback):
        def on_validation_start(self, trainer, module):
            self.calls_before = len(llm_calls)

        def on_validation_end(self, trainer, module):
            validations.append((trainer.global_step, len(llm_calls) - self.calls_before, set(trainer.callback_metrics)))

    module = AVSRModule(model, OptimSettings(lr=1e-2, warmup_steps=2), GenerationSettings(num_beams=1, max_new_tokens=2))
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
                        val_check_interval=1, check_val_every_n_epoch=None, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 3, batch_size=None),
                val_dataloaders=DataLoader([batch], batch_size=None))
    # After step 2 the warm-up is over but the LLM has not stepped yet: still the CTC.
    assert [(step, calls > 0) for step, calls, _ in validations] == [(1, False), (2, False), (3, True)]
    assert "val/ctc" in validations[1][2] and "val/wer" not in validations[1][2]
    assert "val/wer" in validations[2][2]
