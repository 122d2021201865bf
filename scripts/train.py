"""Train Llama-AVSR.  python scripts/train.py [task=avsr compression=16,5 decor.lambda=100 ...]

With no arguments it runs the embedded demo: a synthetic audio-visual corpus and tiny models on
the CPU. See configs/train.yaml for every option. ``python scripts/train.py resume=outputs/train/<run>``
continues an interrupted run from its newest checkpoint, with its own overrides.
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli_overrides import expand_resume, normalize_overrides  # noqa: E402

sys.argv = [sys.argv[0]] + normalize_overrides(expand_resume(sys.argv[1:]))


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from avsr_sinks.training.config_validation import ConfigError, validate_config

    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        validate_config(config)  # before the heavy imports and any weights
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    from avsr_sinks.training.pipeline import train

    result = train(config)
    if "last_checkpoint" in result:
        print("\n" + json.dumps(result, indent=2, default=str))
        if "test_wer" in result:
            test = result["test_summary"]
            print(f"\nTest WER: {100 * result['test_wer']:.2f}% over {test['utterances']} utterances "
                  f"({test['skipped']} skipped, {test['filtered']} filtered out)  ({result['minutes']:.1f} min)")
        print(f"Checkpoint: {result['last_checkpoint']}\nLogs: {result['output_dir']}")


if __name__ == "__main__":
    main()
