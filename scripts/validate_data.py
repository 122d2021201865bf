"""Scan a corpus for missing, unreadable, empty, too long and audio/video-mismatched samples.

python scripts/validate_data.py data=lrs3 data.root=/data data.train_csv=... data.val_csv=... data.test_csv=...
python scripts/validate_data.py data=lrs3 ... splits=[train] workers=8
python scripts/validate_data.py data=librivox splits=[test] modalities=[audio]

Exits with status 1 when any sample is bad, so it can gate a training job.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@hydra.main(version_base="1.3", config_path="../configs", config_name="validate_data")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.data.validation import validate_manifest
    from avsr_sinks.training.datamodule import resolve_corpus, split_csv

    data = cfg.data
    if data.kind != "lrs":  # generated (or copied) into the cache
        corpus = resolve_corpus(OmegaConf.to_container(data, resolve=True))
        try:
            root, csvs = corpus["root"], {split: split_csv(corpus, data, split) for split in cfg.splits}
        except ValueError as err:
            sys.exit(f"config error: {err} (choose splits=[...])")
    else:
        missing = [key for key in ["root", *(f"{split}_csv" for split in cfg.splits)] if OmegaConf.is_missing(data, key)]
        if missing:
            sys.exit(f"config error: set {', '.join('data.' + key for key in missing)} (or choose splits=[...])")
        root, csvs = data.root, {split: data[f"{split}_csv"] for split in cfg.splits}
    max_frames = cfg.max_frames if cfg.max_frames is not None else data.get("max_frames_per_sample")
    bad = 0
    for split, label_csv in csvs.items():
        if not Path(str(label_csv)).is_file():
            sys.exit(f"config error: data.{split}_csv={label_csv} does not exist")
        report = validate_manifest(root, label_csv, list(cfg.modalities), max_frames, cfg.max_av_mismatch_frames, cfg.workers)
        print(f"[{split}] {label_csv}\n{report.summary()}")
        bad += report.n_bad
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
