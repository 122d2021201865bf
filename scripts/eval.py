"""Evaluate a trained checkpoint: corpus WER (+ S/D/I) and per-utterance CSVs, clean and noisy.

python scripts/eval.py ckpt=outputs/train/<run>/checkpoints/last.ckpt eval.snr=[-5,0,5,10,15,20,clean]
"""

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import entry_point  # noqa: E402


@entry_point("eval")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.training.evaluate import evaluate_checkpoint

    cfg = OmegaConf.to_container(cfg, resolve=True)
    try:
        table = evaluate_checkpoint(cfg)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"eval error: {err}")
    if table is not None:  # None on the processes other than rank 0 of trainer.devices>1
        print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
