"""Pick the ACT heads of a trained checkpoint by dev-set WER and write them for eval.py.

python scripts/search_act_heads.py ckpt=outputs/train/<run>/checkpoints/last.ckpt budget=40
python scripts/eval.py ckpt=... act.heads_file=outputs/act_search/<run>/act_heads.json
"""

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import entry_point  # noqa: E402


@entry_point("search_act_heads")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.training.act_search import search_act_heads

    cfg = OmegaConf.to_container(cfg, resolve=True)
    try:
        result = search_act_heads(cfg)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"search error: {err}")
    print(f"dev WER without ACT {result.base_score:.4f}, with ACT on {result.heads}: {result.score:.4f} "
          f"({len(result.trials)} evaluations)")
    print(f"Head file: {cfg['output']}")


if __name__ == "__main__":
    main()
