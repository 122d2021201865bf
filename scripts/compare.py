"""Compare sink mitigations (base, decor, ACT, sink logit, gated attention) in one table.

python scripts/compare.py runs.base=<ckpt> runs.decor=<ckpt> act.heads_file=<act_heads.json> ...
"""

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import entry_point  # noqa: E402


@entry_point("compare")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.training.compare import compare_methods, markdown_table

    cfg = OmegaConf.to_container(cfg, resolve=True)
    try:
        rows = compare_methods(cfg)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"compare error: {err}")
    print(markdown_table(rows, float(cfg["bootstrap"]["confidence"])))
    print(f"Tables: {cfg['output_dir']}/comparison.(csv|json|md)")


if __name__ == "__main__":
    main()
