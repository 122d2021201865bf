"""Sink analysis of a trained checkpoint: per-utterance reports (JSON, CSV, figures) and a summary.

python scripts/analyze.py ckpt=outputs/train/<run>/checkpoints/last.ckpt num_samples=5
"""

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import entry_point  # noqa: E402


@entry_point("analyze")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.training.analyze import analyze_checkpoint

    cfg = OmegaConf.to_container(cfg, resolve=True)
    try:
        result = analyze_checkpoint(cfg)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"analyze error: {err}")
    print(json.dumps({k: v for k, v in result.items() if k != "per_utterance"}, indent=2))
    print(f"Reports: {cfg['output_dir']}")


if __name__ == "__main__":
    main()
