"""The offline speech corpora: espeak-ng sentences (train/val/test) and the LibriVox test utterances.

Expected values are recomputed here from the source files (the ``transcription`` file, the wavs,
a fresh espeak-ng call), not read back from the code under test.
"""

import hashlib
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr_sinks.data import espeak_corpus, read_label_csv
from avsr_sinks.data.espeak_corpus import (PHONEME_CLASSES, EspeakCorpusConfig, corpus_sentences, ensure_espeak_corpus,
                                           drop_phonemes, espeak_binary, espeak_version, phonemize, swap_phonemes,
                                           synthesize, trim_and_normalise)
from avsr_sinks.data.librivox import DEFAULT_SOURCE, ensure_librivox_corpus
from avsr_sinks.data.sentences import generate_sentence
from avsr_sinks.training.config_validation import ConfigError, validate_config
from avsr_sinks.training.datamodule import AVSRDataModule, resolve_corpus

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "val", "test")
TINY = dict(n_train=6, n_val=2, n_test=3, seed=3)
TRANSCRIPT = re.compile(r"[a-z' ]+")

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install -y espeak-ng)")
needs_librivox = pytest.mark.skipif(not (DEFAULT_SOURCE / "transcription").is_file(),
                                    reason=f"{DEFAULT_SOURCE} missing (apt-get install -y pocketsphinx-testdata)")


def _compose(config_name, overrides):
    """A resolved config as the scripts see it (output_dir is Hydra's run folder: set it)."""
    if not any(o.startswith("output_dir=") for o in overrides):
        overrides = [*overrides, "output_dir=unused"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name=config_name, overrides=overrides), resolve=True)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_corpora(tmp_path_factory):
    """The same tiny corpus generated three times: 2 workers, 2 workers again, 1 worker."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    tmp = tmp_path_factory.mktemp("espeak")
    config = EspeakCorpusConfig(**TINY)
    return config, [ensure_espeak_corpus(tmp / name, config, num_workers=workers)
                    for name, workers in (("a", 2), ("b", 2), ("c", 1))]


def _utterances(corpus, split):
    return json.loads(corpus.utterances_json(split).read_text())


@needs_espeak
def test_rows_point_to_16k_mono_wavs_of_their_frame_count(tiny_corpora):
    config, (corpus, *_) = tiny_corpora
    for split in SPLITS:
        rows = read_label_csv(getattr(corpus, f"{split}_csv"))
        assert len(rows) == config.split_size(split)
        for row in rows:
            info = sf.info(str(row.media_path(corpus.root, ".wav")))
            assert row.dataset == "espeak" and row.rel_path.startswith(f"{split}/{split}_")
            assert info.samplerate == 16000 and info.channels == 1
            assert (row.n_frames - 1) * 640 < info.frames <= row.n_frames * 640


@needs_espeak
def test_transcripts_are_the_split_sentences_and_plain_words(tiny_corpora):
    config, (corpus, *_) = tiny_corpora
    sentences = corpus_sentences(config)
    for split in SPLITS:
        transcripts = [row.transcript for row in read_label_csv(getattr(corpus, f"{split}_csv"))]
        assert transcripts == sentences[split] == [u["text"] for u in _utterances(corpus, split)]
        for text in transcripts:
            assert TRANSCRIPT.fullmatch(text) and text == text.lower()
            assert config.min_words <= len(text.split()) <= config.max_words


@needs_espeak
def test_test_voices_are_held_out_and_the_recorded_voice_is_the_one_heard(tiny_corpora):
    config, (corpus, *_) = tiny_corpora
    for split in SPLITS:
        voices = set(config.test_voices if split == "test" else config.train_voices)
        for utterance in _utterances(corpus, split):
            assert utterance["voice"] in voices
            assert config.min_speed <= utterance["speed"] <= config.max_speed
            assert config.min_pitch <= utterance["pitch"] <= config.max_pitch
    assert not set(config.test_voices) & set(config.train_voices)
    # The metadata says how each wav was made: speak it again with those settings.
    utterance = _utterances(corpus, "test")[0]
    expected = trim_and_normalise(synthesize(utterance["text"], utterance["voice"], utterance["speed"],
                                             utterance["pitch"]), utterance["gain"])
    written, _ = sf.read(str(corpus.root / "espeak" / "test" / f"{utterance['id']}.wav"), dtype="float32")
    assert written.shape == expected.shape
    np.testing.assert_allclose(written, expected, atol=1.5 / 32768)
    # A voice of another split sounds different.
    other = trim_and_normalise(synthesize(utterance["text"], config.train_voices[0], utterance["speed"],
                                          utterance["pitch"]), utterance["gain"])
    assert other.shape != expected.shape or not np.allclose(other, expected, atol=0.01)


@needs_espeak
def test_generation_is_deterministic_across_folders_and_worker_counts(tiny_corpora):
    _, (a, b, c) = tiny_corpora
    files = _files(a.root)
    assert len([name for name in files if name.suffix == ".wav"]) == 11
    assert files == _files(b.root) == _files(c.root)
    assert a.root.name == b.root.name == c.root.name


@needs_espeak
def test_second_call_reuses_the_cache(tiny_corpora, monkeypatch):
    config, (corpus, *_) = tiny_corpora
    before = {p: p.stat().st_mtime_ns for p in corpus.root.rglob("*")}

    def must_not_run(_config):
        raise AssertionError("the corpus was generated again")

    monkeypatch.setattr(espeak_corpus, "plan_corpus", must_not_run)
    again = ensure_espeak_corpus(corpus.root.parent, config)
    assert again == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.root.rglob("*")} == before
    assert [p.name for p in corpus.root.parent.iterdir()] == [corpus.root.name]  # no partial folder left
    marker = json.loads((corpus.root / "COMPLETE.json").read_text())
    assert marker["config"]["n_train"] == 6 and marker["espeak"].startswith("eSpeak NG")


def test_sentence_generator_is_broad():
    rng = np.random.default_rng(0)
    sentences = [generate_sentence(rng) for _ in range(3000)]
    vocabulary = {word for sentence in sentences for word in sentence.split()}
    assert len(set(sentences)) >= 2000 and len(vocabulary) >= 800
    assert all(TRANSCRIPT.fullmatch(s) and 4 <= len(s.split()) <= 16 for s in sentences)


def test_splits_share_no_sentence_and_test_does_not_depend_on_train_size():
    config = EspeakCorpusConfig()
    sentences = corpus_sentences(config)
    assert [len(sentences[split]) for split in SPLITS] == [3000, 200, 300]
    for split in SPLITS:
        assert len(set(sentences[split])) == len(sentences[split])
    assert not set(sentences["train"]) & set(sentences["test"])
    assert not set(sentences["train"]) & set(sentences["val"])
    assert not set(sentences["val"]) & set(sentences["test"])
    assert corpus_sentences(EspeakCorpusConfig(n_train=10, n_val=5))["test"] == sentences["test"]


@pytest.mark.parametrize("fields, field", [
    (dict(n_train=-1), "n_train"),
    (dict(train_voices=()), "train_voices"),
    (dict(train_voices=("en-us+m1", "en-us+m1")), "train_voices"),
    (dict(train_voices=("en-xx+m1",)), "train_voices"),
    (dict(test_voices=("en-us+nosuchvariant",)), "test_voices"),
    (dict(test_voices=("en-us+m1",)), "test_voices"),  # a train voice
    (dict(min_speed=200), "min_speed/max_speed"),
    (dict(max_pitch=120), "min_pitch/max_pitch"),
    (dict(min_words=1), "min_words/max_words"),
    (dict(phoneme_swap=1.5), "phoneme_swap"),
    (dict(phoneme_drop=-0.1), "phoneme_drop"),
    (dict(val_voices=("en-us+m1", "en-xx")), "val_voices"),
    (dict(val_voices=("en-029+m5",)), "test_voices must not be val voices"),  # a test voice
])
def test_config_errors_name_the_field(fields, field):
    with pytest.raises(ValueError, match=re.escape(f"EspeakCorpusConfig.{field}")):
        EspeakCorpusConfig(**fields)


def test_a_dev_accent_speaks_only_the_validation_split():
    scotland = tuple(v for v in espeak_corpus.DEFAULT_TRAIN_VOICES if v.startswith("en-gb-scotland+"))
    others = tuple(v for v in espeak_corpus.DEFAULT_TRAIN_VOICES if v not in scotland)
    config = EspeakCorpusConfig(n_train=40, n_val=30, n_test=10, train_voices=others, val_voices=scotland)
    voices = {split: {plan.voice for plan in espeak_corpus.plan_corpus(config) if plan.split == split} for split in SPLITS}
    assert voices["val"] <= set(scotland) and voices["train"] <= set(others)
    assert voices["test"] <= set(espeak_corpus.DEFAULT_TEST_VOICES)
    # The same sentences as without a dev accent: only who speaks the validation split changes.
    assert corpus_sentences(config) == corpus_sentences(EspeakCorpusConfig(n_train=40, n_val=30, n_test=10, train_voices=others))
    assert config.digest("eSpeak NG x") != EspeakCorpusConfig(n_train=40, n_val=30, n_test=10,
                                                              train_voices=others).digest("eSpeak NG x")


WORDS = [["D", "@"], ["k", "'a", "t", "s"], ["s", "'a", "t", "_:"], ["@L"]]  # "the cats sat", a pause, a syllabic l


def _class_of(phoneme):
    return next(members for members in PHONEME_CLASSES if phoneme in members)


def test_swapping_with_probability_one_changes_every_phoneme_within_its_class_alike_everywhere():
    swapped = swap_phonemes(WORDS, 1.0, np.random.default_rng(0))
    assert [len(word) for word in swapped] == [len(word) for word in WORDS]
    mapping = {}
    for word, new_word in zip(WORDS, swapped):
        for old, new in zip(word, new_word):
            stress = old[:len(old) - len(old.lstrip("',"))]
            old, new_bare = old.lstrip("',"), new[len(stress):]
            assert new.startswith(stress)  # the stress mark stays
            if old in ("_:", "@L"):  # a pause and a phoneme outside the classes are kept
                assert new_bare == old
                continue
            assert new_bare != old and new_bare in _class_of(old)
            assert mapping.setdefault(old, new_bare) == new_bare  # every occurrence alike
    assert set(mapping) == {"D", "@", "k", "a", "t", "s"}


def test_swapping_with_probability_zero_keeps_the_phonemes_and_swaps_are_seeded():
    assert swap_phonemes(WORDS, 0.0, np.random.default_rng(0)) == WORDS
    draws = [swap_phonemes(WORDS, 0.5, np.random.default_rng(seed)) for seed in (1, 1, 2, 3, 4)]
    assert draws[0] == draws[1] and any(draw != draws[0] for draw in draws[2:])


def test_dropping_with_probability_one_leaves_out_every_consonant_and_moves_its_stress():
    words = [["h", "'i:"], ["h", "'a", "z"], ["'t", "@"], ["m"]]
    # Every consonant goes; a stress mark moves on to the next phoneme; a consonant-only word stays.
    assert drop_phonemes(words, 1.0, np.random.default_rng(0)) == [["'i:"], ["'a"], ["'@"], ["m"]]
    assert drop_phonemes(words, 0.0, np.random.default_rng(0)) == words


def test_dropping_is_all_or_nothing_per_consonant():
    words = [["h", "'i:"], ["h", "'a", "z"], ["h", "'I", "z"], ["z", "'u:"]]
    outcomes = set()
    for seed in range(20):
        kept = [phoneme.lstrip("'") for word in drop_phonemes(words, 0.5, np.random.default_rng(seed)) for phoneme in word]
        assert kept.count("h") in (0, 3) and kept.count("z") in (0, 3)  # every occurrence alike
        assert [p for p in kept if p not in ("h", "z")] == ["i:", "a", "I", "u:"]  # vowels are never dropped
        outcomes.add((kept.count("h"), kept.count("z")))
    assert len(outcomes) == 4  # each of h and z both kept and dropped across the seeds


def test_phoneme_swap_left_at_zero_keeps_the_cache_folder_of_corpora_generated_before_it():
    # The folder name of generator version 1's configs, recomputed from its definition.
    fields = {"n_train": 3000, "n_val": 200, "n_test": 300, "seed": 0,
              "train_voices": list(espeak_corpus.DEFAULT_TRAIN_VOICES), "test_voices": list(espeak_corpus.DEFAULT_TEST_VOICES),
              "min_speed": 130, "max_speed": 190, "min_pitch": 30, "max_pitch": 70, "min_words": 4, "max_words": 16}
    text = json.dumps({"config": fields, "generator": 1, "espeak": "eSpeak NG x"}, sort_keys=True)
    assert EspeakCorpusConfig().digest("eSpeak NG x") == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert EspeakCorpusConfig(phoneme_swap=0.1).digest("eSpeak NG x") != EspeakCorpusConfig().digest("eSpeak NG x")
    assert EspeakCorpusConfig(phoneme_drop=0.1).digest("eSpeak NG x") != EspeakCorpusConfig().digest("eSpeak NG x")


@needs_espeak
def test_every_swappable_phoneme_is_one_espeak_speaks():
    for members in PHONEME_CLASSES:
        for phoneme in members:
            # Spoken between k and m, stressed: espeak-ng reads it back as one phoneme of the class
            # (the unstressed a# comes back as its stressed a).
            k, middle, m = phonemize_phonemes(["k", f"'{phoneme}", "m"])
            assert (k, m) == ("k", "m") and middle.lstrip("'") in members, (phoneme, middle)


def phonemize_phonemes(phonemes):
    output = subprocess.run([espeak_binary(), "-q", "-x", "--sep=|", "-v", "en-us", "[[" + "|".join(phonemes) + "]]"],
                            capture_output=True, text=True, check=True).stdout
    return output.split()[0].split("|")


@needs_espeak
def test_respelt_corpus_speaks_its_training_utterances_from_the_recorded_swapped_phonemes(tmp_path):
    config = EspeakCorpusConfig(**TINY, phoneme_swap=0.3)
    corpus = ensure_espeak_corpus(tmp_path, config, num_workers=1)
    assert corpus.root.name == f"corpus-{config.digest(espeak_version())}"
    train = _utterances(corpus, "train")
    assert all(u["phoneme_swap"] == 0.3 and "phonemes" in u for u in train)
    assert all(u["phoneme_swap"] == 0.0 and "phonemes" not in u for split in ("val", "test")
               for u in _utterances(corpus, split))
    changed = 0
    for utterance in train:
        spoken = [word.split("|") for word in utterance["phonemes"].split()]
        own = phonemize(utterance["text"], utterance["voice"])
        assert [len(word) for word in spoken] == [len(word) for word in own]
        changed += spoken != own
        expected = trim_and_normalise(synthesize(utterance["text"], utterance["voice"], utterance["speed"],
                                                 utterance["pitch"], spoken), utterance["gain"])
        written, _ = sf.read(str(corpus.root / "espeak" / "train" / f"{utterance['id']}.wav"), dtype="float32")
        np.testing.assert_allclose(written, expected, atol=1.5 / 32768)
    assert changed >= len(train) - 1  # 0.3 of ~20 distinct phonemes: nearly every sentence is respelt


def test_missing_espeak_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(espeak_corpus.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install -y espeak-ng"):
        espeak_binary()


def _transcription():
    pairs = []
    for line in (DEFAULT_SOURCE / "transcription").read_text().splitlines():
        text, fileid = line.rsplit("(", 1)
        pairs.append((fileid.rstrip(")"), text.replace("<s>", "").replace("</s>", "").strip().lower()))
    return pairs


@needs_librivox
def test_librivox_copies_the_five_utterances_with_their_transcripts(tmp_path):
    corpus = ensure_librivox_corpus(tmp_path)
    rows = read_label_csv(corpus.test_csv)
    assert len(rows) == 5
    assert [(Path(row.rel_path).name, row.transcript) for row in rows] == _transcription()
    for row in rows:
        source = DEFAULT_SOURCE / f"{Path(row.rel_path).name}.wav"
        copy = row.media_path(corpus.root, ".wav")
        assert copy == tmp_path / "librivox" / "librivox" / "test" / source.name
        expected, rate = sf.read(str(source), dtype="int16")
        written, written_rate = sf.read(str(copy), dtype="int16")
        assert rate == written_rate == 16000 and np.array_equal(written, expected)
        assert row.n_frames == math.ceil(expected.size / 640)
    mtime = corpus.test_csv.stat().st_mtime_ns
    assert ensure_librivox_corpus(tmp_path) == corpus and corpus.test_csv.stat().st_mtime_ns == mtime


def test_missing_librivox_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y pocketsphinx-testdata"):
        ensure_librivox_corpus(tmp_path / "cache", tmp_path / "nowhere")
    assert not any((tmp_path / "cache").iterdir()), "a failed build must leave no partial folder"


@needs_espeak
@needs_librivox
def test_resolve_corpus_for_both_kinds(tmp_path):
    espeak = resolve_corpus({"kind": "espeak", "cache_dir": str(tmp_path), "espeak": TINY})
    assert espeak["vocabulary"] is None and espeak["root"].parent == tmp_path / "espeak"
    assert all(espeak[f"{split}_csv"].is_file() for split in SPLITS)
    librivox = resolve_corpus({"kind": "librivox", "cache_dir": str(tmp_path), "source": str(DEFAULT_SOURCE)})
    assert librivox["train_csv"] is None and librivox["val_csv"] is None and librivox["test_csv"].is_file()
    assert librivox["root"] == tmp_path / "librivox"


def test_unknown_kind_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"data\.kind='nope': choose one of synthetic, espeak, librivox, lrs"):
        resolve_corpus({"kind": "nope"})


def test_label_files_given_for_a_generated_corpus_are_refused_not_ignored(tmp_path):
    # eval.py data.test_csv=... on an espeak checkpoint decoded the generated test split instead.
    with pytest.raises(ValueError, match=r"data\.test_csv='other\.csv' is read only with a corpus of your own .*data=lrs3"):
        resolve_corpus({"kind": "espeak", "cache_dir": str(tmp_path), "espeak": TINY, "test_csv": "other.csv"})
    own = resolve_corpus({"kind": "lrs", "root": str(tmp_path), "test_csv": "mine.csv"})
    assert own["test_csv"] == "mine.csv" and own["train_csv"] is None and own["val_csv"] is None


@needs_librivox
def test_librivox_datamodule_refuses_to_train_but_tests(tmp_path):
    data = _compose("train", ["task=asr", "data=librivox", f"data.cache_dir={tmp_path}", "data.num_workers=0"])["data"]
    module = AVSRDataModule(data, resolve_corpus(data), ("audio",), seed=0)
    message = "data=librivox has no train split: it is for evaluation (scripts/eval.py data=librivox ..."
    with pytest.raises(ValueError, match=re.escape(message)):
        module.train_dataloader()
    batches = list(module.test_dataloader())
    assert sum(len(batch["ids"]) for batch in batches) == 5


def test_data_configs_validate_and_audio_only_corpora_need_task_asr(tmp_path):
    validate_config(_compose("train", ["task=asr", "compression=4", "data=espeak", f"data.cache_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match="has no train split, only test"):  # LibriVox: evaluation only
        validate_config(_compose("train", ["task=asr", "compression=4", "data=librivox", f"data.cache_dir={tmp_path}"]))
    for name in ("espeak", "librivox"):
        with pytest.raises(ConfigError, match=f"data={name}: has audio only"):
            validate_config(_compose("train", ["task=avsr", f"data={name}"]))
    with pytest.raises(ConfigError, match=r"data\.espeak=\{n_train: -1\}: n_train must be >= 0"):
        validate_config(_compose("train", ["task=asr", "compression=4", "data=espeak", "data.espeak.n_train=-1"]))


@needs_librivox
def test_eval_with_data_librivox_decodes_the_librivox_test_split(tmp_path):
    """scripts/eval.py ckpt=... data=librivox: the checkpoint's corpus is replaced by LibriVox."""
    from avsr_sinks.model.tiny_llm import build_tiny_llm
    from avsr_sinks.training.build import build_model
    from avsr_sinks.training.evaluate import evaluate_checkpoint

    llm = build_tiny_llm(tmp_path / "llm", ["he", "was", "not", "man"], hidden_size=16, num_layers=2, num_heads=2,
                         num_kv_heads=1, intermediate_size=32, seed=0)
    run = _compose("train", ["task=asr", "compression=4", "data=espeak", f"data.cache_dir={tmp_path / 'cache'}",
                             f"model.llm.path={llm}", "model.audio_encoder.config.d_model=16",
                             "model.audio_encoder.config.encoder_layers=1",
                             "model.audio_encoder.config.encoder_attention_heads=2",
                             "model.audio_encoder.config.encoder_ffn_dim=32", f"output_dir={tmp_path / 'run'}"])
    model = build_model(run, None)
    trained = model.trained_state_keys()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items() if k in trained},
                "hyper_parameters": {"config": run}}, tmp_path / "model.ckpt")
    table = evaluate_checkpoint(_compose("eval", [f"ckpt={tmp_path / 'model.ckpt'}", "data=librivox",
                                                  f"data.cache_dir={tmp_path / 'cache'}", "generation.num_beams=1",
                                                  "generation.max_new_tokens=2", "device=cpu",
                                                  f"output_dir={tmp_path / 'eval'}"]))
    assert table["split"] == "test" and table["rows"][0]["utterances"] == 5
    assert table["rows"][0]["reference_words"] == sum(len(text.split()) for _, text in _transcription())
    assert not (tmp_path / "cache" / "espeak").exists()  # the checkpoint's own corpus is not generated
