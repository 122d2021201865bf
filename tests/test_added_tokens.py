"""The trainable rows of the added tokens (model/added_tokens.py): against a full matrix built by
hand, and against peft's ``trainable_token_indices`` (the way before, built inline as the
reference of the old checkpoints), whose checkpoints still load."""

import copy
import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from avsr_sinks.model.added_tokens import AddedTokenEmbedding, AddedTokenOutput, upgrade_peft_token_keys
from avsr_sinks.model.avsr import GenerationSettings, LlamaAVSR
from avsr_sinks.model.llm import LoraSettings, add_special_tokens, prepare_llm
from avsr_sinks.training.checkpoints import load_trained_state, read_checkpoint
from conftest import FrameEncoder

LORA = LoraSettings(rank=4, alpha=8, dropout=0.0)
BATCH = {"audio": torch.randn(2, 900, generator=torch.Generator().manual_seed(3)),
         "audio_lengths": torch.tensor([900, 400]), "text": ["one two", "blue"], "ids": ["a", "b"]}


def _full_matrix(embedding: AddedTokenEmbedding) -> torch.Tensor:
    """The matrix a plain embedding would hold: the frozen rows with the trained rows in their place."""
    base = embedding.base.weight
    return torch.cat([base[:embedding.first], embedding.added_rows, base[embedding.first + embedding.count:]])


def _plain_llm(tiny_llm_dir, tied: bool):
    """The tiny Llama and its tokenizer, before the special tokens; untied: its own random output layer."""
    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir, **({} if tied else {"tie_word_embeddings": False}))
    if not tied:
        model.lm_head.weight.data = torch.randn_like(model.lm_head.weight) * model.config.hidden_size ** -0.5
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    return model, AutoTokenizer.from_pretrained(tiny_llm_dir)


def _peft_way(model, tokenizer):
    """prepare_llm as it was: peft's trainable_token_indices trained the added rows (the old checkpoints' format)."""
    special = add_special_tokens(tokenizer)
    model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = model.generation_config.pad_token_id = special.pad
    model.requires_grad_(False)
    config = LoraConfig(r=LORA.rank, lora_alpha=LORA.alpha, lora_dropout=LORA.dropout, target_modules=list(LORA.target_modules),
                        trainable_token_indices={"embed_tokens": special.added}, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config), tokenizer, special


def test_lookup_and_tied_logits_equal_a_full_matrix_with_the_trained_rows(tiny_llm):
    llm, tok, special = tiny_llm
    embedding, output = llm.get_input_embeddings(), llm.get_output_embeddings()
    assert isinstance(embedding, AddedTokenEmbedding) and isinstance(output, AddedTokenOutput)
    assert (embedding.first, embedding.count) == (special.added[0], len(special.added)) == (len(tok) - 5, 5)
    with torch.no_grad():
        embedding.added_rows.normal_(generator=torch.Generator().manual_seed(1))
    full = _full_matrix(embedding).detach()
    ids = torch.arange(len(tok)).flip(0).view(2, -1)  # every id, old and added, in a batch
    assert torch.equal(embedding(ids), full[ids])
    hidden = torch.randn(2, 3, full.shape[1], generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(output(hidden), hidden @ full.T)
    torch.testing.assert_close(embedding.weight, full)
    assert output.weight.shape == full.shape and output.out_features == full.shape[0]

    # The whole LLM, logits of chosen positions only (logits_to_keep as LlamaAVSR.forward passes it),
    # against the plain Llama whose tied matrix is the full one (LoRA's B is still zero: no change).
    plain = copy.deepcopy(llm.get_base_model())
    plain.set_input_embeddings(torch.nn.Embedding.from_pretrained(full.clone()))
    plain.set_output_embeddings(torch.nn.Linear(full.shape[1], full.shape[0], bias=False))
    plain.lm_head.weight = plain.model.embed_tokens.weight
    input_ids = torch.tensor([[special.bos, special.audio_start, 5, special.audio_end, 7, 8, special.pad]])
    keep = torch.tensor([1, 3, 6])
    with torch.no_grad():
        expected = plain(input_ids=input_ids).logits[:, keep]
        got = llm(input_ids=input_ids, logits_to_keep=keep).logits
    torch.testing.assert_close(got, expected)


def test_gradients_reach_the_added_rows_only_and_equal_the_full_matrix_ones(tiny_llm):
    llm, tok, special = tiny_llm
    embedding, output = llm.get_input_embeddings(), llm.get_output_embeddings()
    reference = _full_matrix(embedding).detach().clone().requires_grad_(True)
    ids = torch.tensor([[special.audio_start, 4, special.pad, 6, special.audio_start]])

    def loss(lookup, logits_of):
        hidden = torch.tanh(lookup(ids))  # the input rows reach the output layer both ways
        return torch.log_softmax(logits_of(hidden), -1)[0, :, special.video_end].sum()

    loss(embedding, output).backward()
    loss(lambda i: reference[i], lambda h: h @ reference.T).backward()
    assert embedding.base.weight.grad is None and not embedding.base.weight.requires_grad
    assert [n for n, p in llm.named_parameters() if p.grad is not None] == ["base_model.model.model.embed_tokens.added_rows"]
    torch.testing.assert_close(embedding.added_rows.grad, reference.grad[embedding.first:embedding.first + embedding.count])
    assert reference.grad[:embedding.first].abs().sum() > 0  # a full matrix would train the old rows too


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_an_old_peft_checkpoint_computes_the_same_loss_gradients_and_beams(tiny_llm_dir, tmp_path, tied):
    plain, tokenizer = _plain_llm(tiny_llm_dir, tied)
    torch.manual_seed(0)  # the same mean-resizing draws for both
    old_llm, old_tok, special = _peft_way(copy.deepcopy(plain), copy.deepcopy(tokenizer))
    torch.manual_seed(0)
    new_llm, new_tok, new_special = prepare_llm(plain, tokenizer, LORA)
    assert new_special == special
    # What peft did: the input rows train; the output layer follows them where tied, else stays frozen.
    assert (type(old_llm.get_output_embeddings()).__name__ == "TrainableTokensWrapper") == tied
    assert isinstance(new_llm.get_output_embeddings(), AddedTokenOutput if tied else torch.nn.Linear)
    if not tied:
        assert torch.equal(new_llm.get_output_embeddings().weight, old_llm.get_base_model().lm_head.weight)

    torch.manual_seed(1)
    encoder = FrameEncoder("audio", hop=100).requires_grad_(False)
    old = LlamaAVSR(old_llm, old_tok, special, "asr", [2], audio_encoder=copy.deepcopy(encoder))
    new = LlamaAVSR(new_llm, new_tok, special, "asr", [2], audio_encoder=encoder)
    # Train the old model's rows and LoRA away from their start (large rows: the beams pick added tokens).
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, parameter in old.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (3.0 if "delta" in name else 0.5))
    # Its checkpoint, as AVSRModule.on_save_checkpoint writes it.
    trained = old.trained_state_keys()
    assert any(k.endswith("embed_tokens.token_adapter.trainable_tokens_delta.default") for k in trained)
    torch.save({"state_dict": {f"model.{k}": v.detach().clone() for k, v in old.state_dict().items() if k in trained}},
               tmp_path / "old.ckpt")
    load_trained_state(new, read_checkpoint(tmp_path / "old.ckpt")["state_dict"])
    assert new.trained_state_keys() == set(upgrade_peft_token_keys(dict.fromkeys(trained)))
    assert torch.equal(new_llm.get_input_embeddings().added_rows,
                       old_llm.get_base_model().model.embed_tokens.token_adapter.trainable_tokens_delta["default"])

    old.train(), new.train()
    old_loss, new_loss = old(BATCH).loss, new(BATCH).loss
    torch.testing.assert_close(new_loss, old_loss)
    old_loss.backward(), new_loss.backward()
    old_grads = {upgrade_peft_token_keys({n: 0}).popitem()[0]: p.grad for n, p in old.named_parameters() if p.requires_grad}
    new_grads = {n: p.grad for n, p in new.named_parameters() if p.requires_grad}
    assert old_grads.keys() == new_grads.keys()
    for name, grad in new_grads.items():
        torch.testing.assert_close(grad, old_grads[name], msg=name)

    # Beam search on inputs_embeds prefixes: HF's own, its scores over the whole vocabulary, and the project's.
    old.eval(), new.eval()
    beams = {}
    for name, model in (("old", old), ("new", new)):
        with torch.no_grad():
            inputs = model.assemble(BATCH, for_generation=True)
            beams[name] = model.llm.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                                             num_beams=3, max_new_tokens=6, min_new_tokens=6, output_scores=True,
                                             return_dict_in_generate=True, pad_token_id=special.pad)
    assert torch.equal(beams["new"].sequences, beams["old"].sequences)
    if tied:  # the beams chose added tokens: their logits came from the trained rows, and their inputs too
        assert set(beams["new"].sequences.flatten().tolist()) & set(special.added)
    for new_scores, old_scores in zip(beams["new"].scores, beams["old"].scores, strict=True):
        torch.testing.assert_close(new_scores, old_scores)
    settings = GenerationSettings(num_beams=3, max_new_tokens=5, extra={"min_new_tokens": 2})
    assert new.generate_hypotheses(BATCH, settings) == old.generate_hypotheses(BATCH, settings)


def test_upgrading_keys_renames_peft_rows_and_drops_the_tied_copy():
    rows, lora = torch.ones(2, 3), torch.zeros(1)
    state = {"model.llm.base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta.default": rows,
             "model.llm.base_model.model.lm_head.token_adapter.trainable_tokens_delta.default": rows,
             "model.llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": lora}
    assert upgrade_peft_token_keys(state) == {
        "model.llm.base_model.model.model.embed_tokens.added_rows": rows,
        "model.llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": lora}
    current = {"model.llm.base_model.model.model.embed_tokens.added_rows": rows}
    assert upgrade_peft_token_keys(current) == current


def test_added_rows_must_be_consecutive_rows_of_a_plain_embedding():
    embedding = torch.nn.Embedding(10, 4)
    with pytest.raises(ValueError, match="consecutive"):
        AddedTokenEmbedding(embedding, [7, 9])
    with pytest.raises(ValueError, match="consecutive"):
        AddedTokenEmbedding(embedding, [9, 10])
    with pytest.raises(TypeError, match="plain nn.Embedding"):
        AddedTokenEmbedding(torch.nn.Embedding(10, 4, max_norm=1.0), [9])
    middle = AddedTokenEmbedding(embedding, [3, 4])  # rows after the block read the frozen matrix
    ids = torch.arange(10)
    linear = torch.nn.Linear(4, 10, bias=False)
    linear.weight = embedding.weight
    with torch.no_grad():
        middle.added_rows.mul_(-2.0)
    full = _full_matrix(middle).detach()
    assert torch.equal(middle(ids), full)
    hidden = torch.randn(5, 4)
    torch.testing.assert_close(AddedTokenOutput(linear, middle)(hidden), hidden @ full.T)
