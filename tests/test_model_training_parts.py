"""Which parameters train, generation, compressors, WER and the schedule."""

import math

import pytest
import torch

from avsr_sinks.evaluation.wer import corpus_wer, normalize_text
from avsr_sinks.model.avsr import DecorrelationSettings, GenerationSettings, LlamaAVSR
from avsr_sinks.model.compressor import AvgPoolCompressor, StackCompressor
from avsr_sinks.training.schedule import warmup_cosine
from conftest import FrameEncoder

BATCH = {"audio": torch.randn(2, 900, generator=torch.Generator().manual_seed(3)),
         "audio_lengths": torch.tensor([900, 400]), "text": ["one two", "blue"], "ids": ["a", "b"]}


def _frozen_encoder():
    encoder = FrameEncoder("audio", hop=100)
    encoder.requires_grad_(False)
    return encoder


def test_gradients_reach_only_lora_projectors_and_new_embedding_rows(tiny_llm):
    llm, tok, special = tiny_llm
    model = LlamaAVSR(llm, tok, special, "asr", [2], audio_encoder=_frozen_encoder(),
                      decorrelation=DecorrelationSettings(weight=10.0))
    embedding_before = llm.get_base_model().model.embed_tokens.weight.detach().clone()
    model(BATCH).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable  # every trainable parameter gets a gradient, nothing else does
    # lora_A's gradient is exactly zero while lora_B is at its zero init; all others move
    silent = {n for n in trainable if model.get_parameter(n).grad.abs().sum() == 0}
    assert silent == {n for n in trainable if "lora_A" in n}
    assert all(("lora_" in n) or n.startswith("projectors.") or n.endswith("embed_tokens.added_rows") for n in trainable)
    assert any("lora_A" in n for n in trainable) and any(n.startswith("projectors.") for n in trainable)
    # only the rows of the added tokens are trainable, not the whole embedding matrix
    rows = [p for n, p in model.named_parameters() if n.endswith("added_rows")]
    assert len(rows) == 1 and rows[0].shape[0] == len(special.added)
    assert set(special.added) >= {special.pad, special.audio_start, special.audio_end, special.video_start, special.video_end}
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    weight_after = llm.get_base_model().model.embed_tokens.weight  # effective rows: the frozen ones and the trained ones
    old_rows = [i for i in range(weight_after.shape[0]) if i not in special.added]
    torch.testing.assert_close(weight_after[old_rows], embedding_before[old_rows])  # the vocabulary is untouched
    assert not torch.allclose(weight_after[special.added], embedding_before[special.added])  # new rows learn


def test_batched_beam_search_equals_one_by_one_and_is_deterministic(tiny_llm):
    from conftest import WORDS

    llm, tok, special = tiny_llm
    torch.manual_seed(1)
    model = LlamaAVSR(llm, tok, special, "asr", [2], audio_encoder=_frozen_encoder()).eval()
    # Make the untrained model emit words: every token that is not a vocabulary word (specials,
    # the added modality tokens, EOS) is suppressed, and at least 3 tokens are generated, so the
    # comparison is between real hypotheses, not between empty strings.
    word_ids = set(tok.convert_tokens_to_ids(WORDS))
    settings = GenerationSettings(num_beams=3, max_new_tokens=5, extra={
        "suppress_tokens": [i for i in range(len(tok)) if i not in word_ids], "min_new_tokens": 3})
    batch = dict(BATCH)
    together = model.generate(batch, settings)
    alone = [model.generate({"audio": batch["audio"][i:i + 1, : int(batch["audio_lengths"][i])],
                             "audio_lengths": batch["audio_lengths"][i:i + 1]}, settings)[0] for i in range(2)]
    assert all(3 <= len(h.split()) <= 5 and set(h.split()) <= set(WORDS) for h in together), together
    assert together == alone
    assert model.generate(batch, settings) == together


def test_compressors_by_hand():
    x = torch.arange(1.0, 8.0).view(1, 7, 1)  # frames 1..7
    pooled, lengths = AvgPoolCompressor(3)(x, torch.tensor([7]))
    assert pooled.flatten().tolist() == [2.0, 5.0, 7.0] and lengths.tolist() == [3]
    pooled, lengths = AvgPoolCompressor(3)(x, torch.tensor([4]))  # frames 5..7 are padding
    assert pooled.flatten().tolist()[:2] == [2.0, 4.0] and lengths.tolist() == [2]
    stacked, lengths = StackCompressor(2)(x, torch.tensor([5]))
    assert stacked[0].tolist()[:3] == [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]] and lengths.tolist() == [3]


def test_wer_hand_computed_cases():
    result = corpus_wer(["u1", "u2", "u3"], ["the cat sat", "a b c d", "Hello, World!"], ["the bat sat down", "a c d", "hello world"])
    # u1: 1 substitution + 1 insertion; u2: 1 deletion; u3: exact after normalisation -> 3 / 9
    assert (result.substitutions, result.deletions, result.insertions, result.reference_words) == (1, 1, 1, 9)
    assert result.wer == pytest.approx(3 / 9)
    assert [u.errors for u in result.utterances] == [2, 1, 0]
    assert corpus_wer(["x"], ["two words"], [""]).deletions == 2
    assert normalize_text("  It's   A-OK. ") == "it's a ok"


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0)


def test_parameter_groups_encoder_lr_and_decay_on_matrices_only():
    from avsr_sinks.training.module import OptimSettings, parameter_groups

    model = torch.nn.Module()
    model.encoders = torch.nn.ModuleDict({"video": torch.nn.Linear(3, 4), "audio": torch.nn.Linear(3, 4)})
    model.projectors = torch.nn.ModuleDict({"video": torch.nn.Linear(4, 5)})
    model.frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    by_params = {frozenset(ids(g)): (g["lr"], g["weight_decay"]) for g in
                 parameter_groups(model, OptimSettings(lr=3e-3, weight_decay=0.1, encoder_lr={"video": 1e-3}))}
    video, audio, proj = model.encoders["video"], model.encoders["audio"], model.projectors["video"]
    assert by_params == {frozenset({id(video.weight)}): (1e-3, 0.1), frozenset({id(video.bias)}): (1e-3, 0.0),
                         frozenset({id(audio.weight), id(proj.weight)}): (3e-3, 0.1),
                         frozenset({id(audio.bias), id(proj.bias)}): (3e-3, 0.0)}
    same = parameter_groups(model, OptimSettings(lr=3e-3, weight_decay=0.1))  # encoder_lr unset: one lr
    assert sorted((g["lr"], g["weight_decay"], len(g["params"])) for g in same) == [(3e-3, 0.0, 3), (3e-3, 0.1, 3)]


def test_sink_logits_take_lr_sized_adam_steps_whatever_their_gradient_scale():
    from avsr_sinks.sinks.baselines.sink_logit import SinkLogits
    from avsr_sinks.training.module import OptimSettings, parameter_groups

    def one_step(settings, eps_override=None):
        model = torch.nn.Module()
        model.projector = torch.nn.Linear(2, 2)
        model.attn = torch.nn.Module()
        model.attn.sink_logit = SinkLogits(3, init=-20.0)
        groups = parameter_groups(model, settings)
        if eps_override is not None:
            for group in groups:
                group["eps"] = eps_override
        optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.98))
        # A gradient of 1e-12, the scale a near-no-op sink logit sees beside strong sinks.
        (1e-12 * (model.attn.sink_logit.logit * torch.tensor([1.0, -1.0, 2.0])).sum()).backward()
        optimizer.step()
        return model.attn.sink_logit.logit.detach()

    settings = OptimSettings(lr=1e-3, weight_decay=0.1, sink_logit_lr=0.05)
    # Adam's first step, bias-corrected, is lr * g / (|g| + eps) = lr * sign(g) when eps << |g|.
    torch.testing.assert_close(one_step(settings), torch.tensor([-20.05, -19.95, -20.05]), rtol=0, atol=1e-6)
    # With AdamW's default eps (1e-8) the same gradient moves the logit by lr * 1e-4 only.
    stuck = one_step(settings, eps_override=1e-8)
    assert (stuck + 20.0).abs().max() < 1e-5
    lr_of = {len(g["params"]): g["lr"] for g in parameter_groups(torch.nn.Linear(2, 2), settings)}
    assert lr_of == {1: 1e-3}  # no sink logits: every group keeps optim.lr


def test_cross_entropy_equals_a_token_by_token_sum_over_full_logits(tiny_llm):
    """The loss projects only the label-predicting positions onto the vocabulary; it must equal
    the mean of -log p(next token) read from the LLM's full logits, one labelled token at a time."""
    llm, tok, special = tiny_llm
    model = LlamaAVSR(llm, tok, special, "asr", [2], audio_encoder=_frozen_encoder())
    model.eval()
    with torch.no_grad():
        ce = model(BATCH).ce
        inputs = model.assemble(BATCH)
        logits = llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                     position_ids=inputs.position_ids, use_cache=False).logits.double()
    terms = [-torch.log_softmax(logits[b, t - 1], -1)[inputs.labels[b, t]]
             for b in range(logits.shape[0]) for t in range(1, logits.shape[1]) if inputs.labels[b, t] != -100]
    # every transcript word and EOS of both samples is a labelled token
    assert len(terms) == sum(len(tok(text, add_special_tokens=False).input_ids) + 1 for text in BATCH["text"])
    torch.testing.assert_close(ce.double(), torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


def test_the_kinds_the_config_check_offers_are_the_ones_that_build():
    from avsr_sinks.model.compressor import build_compressor
    from avsr_sinks.model.projector import build_projector
    from avsr_sinks.model.tasks import COMPRESSOR_KINDS, PROJECTOR_KINDS

    assert [type(build_projector(kind, 4, 8)[-1]).__name__ for kind in PROJECTOR_KINDS] == ["Linear", "Linear"]
    assert [build_compressor(kind, 2).output_dim(4) for kind in COMPRESSOR_KINDS] == [4, 8]  # avg-pool, stack
    with pytest.raises(ValueError, match="model.projector.kind"):
        build_projector("qformer", 4, 8)


def test_recount_utterance_csv_uses_the_hypotheses_not_the_written_counts(tmp_path):
    from avsr_sinks.evaluation.runner import write_utterance_csv
    from avsr_sinks.evaluation.wer import recount_utterance_csv

    path = tmp_path / "test_utterances.csv"
    write_utterance_csv(path, corpus_wer(["u1", "u2"], ["the cat sat", "a b c d"], ["the cat sat", "a b c d"]))
    rows = path.read_text().splitlines()
    # Same counts columns (0 errors), other hypotheses: the recount must follow the hypotheses.
    rows[1] = rows[1].replace("the cat sat,0", "the bat sat down,0", 1)
    rows[2] = rows[2].replace("a b c d,0", "a c d,0", 1)
    path.write_text("\n".join(rows) + "\n")
    result = recount_utterance_csv(path)
    # u1: 1 substitution + 1 insertion, u2: 1 deletion, over 3 + 4 reference words
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 1)
    assert result.wer == pytest.approx(3 / 7)
    path.write_text("id,reference\nu1,the cat\n")
    with pytest.raises(ValueError, match="missing \\['hypothesis'\\]"):
        recount_utterance_csv(path)
