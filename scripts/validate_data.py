"""Scan a corpus for missing, unreadable, empty, too long and audio/video-mismatched samples, and
for rows the model cannot take (empty transcripts; with the run's compression, samples shorter
than a compression window; with its LLM too, sequences past the LLM's positions).

python scripts/validate_data.py data=lrs3 data.root=/data data.train_csv=... data.val_csv=... data.test_csv=...
python scripts/validate_data.py data=lrs3 ... splits=[train] workers=8 compression=[16,5] llm=/models/Llama-3.2-3B
python scripts/validate_data.py data=librivox splits=[test] modalities=[audio]

Exits with status 1 when any sample is bad, so it can gate a training job.
"""

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import entry_point  # noqa: E402


def run_limits(cfg: DictConfig):
    """What the run (``compression``, ``llm``) can take; only empty transcripts without them."""
    from avsr_sinks.data import SampleLimits
    from avsr_sinks.model.tasks import DEFAULT_PROMPTS, TASK_MODALITIES, sample_limits

    if cfg.compression is None:
        return SampleLimits()
    compression = dict(zip(cfg.modalities, cfg.compression))
    if cfg.llm is None:
        return sample_limits(compression, 0, len, None)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.llm)
    task = next(name for name, used in TASK_MODALITIES.items() if set(used) == set(compression))
    max_positions = json.loads((Path(cfg.llm) / "config.json").read_text()).get("max_position_embeddings")
    return sample_limits(compression, len(tokenizer(DEFAULT_PROMPTS[task], add_special_tokens=False).input_ids),
                         lambda text: len(tokenizer(text, add_special_tokens=False).input_ids), max_positions)


@entry_point("validate_data")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.data.validation import validate_manifest
    from avsr_sinks.training.datamodule import resolve_corpus, split_csv

    data = OmegaConf.to_container(cfg.data, resolve=True)
    corpus = resolve_corpus(data)  # a generated corpus is generated (once) into the cache
    max_frames = cfg.max_frames if cfg.max_frames is not None else data.get("max_frames_per_sample")
    limits = run_limits(cfg)
    bad = 0
    for split in cfg.splits:
        label_csv = split_csv(corpus, data, split)
        report = validate_manifest(corpus["root"], label_csv, list(cfg.modalities), max_frames, cfg.max_av_mismatch_frames,
                                   cfg.workers, limits=limits)
        print(f"[{split}] {label_csv}\n{report.summary()}")
        bad += report.n_bad
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
