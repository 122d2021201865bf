"""Train Llama-AVSR.  python scripts/train.py [task=avsr compression=16,5 decor.lambda=100 ...]

With no arguments it runs the embedded demo: a synthetic audio-visual corpus and tiny models on
the CPU. See configs/train.yaml for every option. ``python scripts/train.py resume=outputs/train/<run>``
continues an interrupted run from its newest checkpoint, with its own overrides.
"""

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avsr_sinks.training.cli import entry_point  # noqa: E402
from avsr_sinks.training.cli_overrides import expand_resume  # noqa: E402


@entry_point("train", expand=expand_resume)  # checks the command line and the config before anything loads
def main(cfg: DictConfig) -> None:
    from avsr_sinks.data import TooManyBadSamplesError
    from avsr_sinks.training.pipeline import train

    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        result = train(config)
    except TooManyBadSamplesError as err:
        sys.exit(f"data error: {err}")
    if "last_checkpoint" in result:
        print("\n" + json.dumps(result, indent=2, default=str))
        if "test_wer" in result:
            test = result["test_summary"]
            print(f"\nTest WER: {100 * result['test_wer']:.2f}% over {test['utterances']} utterances "
                  f"({test['skipped']} skipped, {test['filtered']} filtered out)  ({result['minutes']:.1f} min)")
        print("Time: " + ", ".join(f"{part} {seconds:.0f} s" for part, seconds in result["seconds"].items()))
        print(f"Checkpoint: {result['last_checkpoint']}\nLogs: {result['output_dir']}")


if __name__ == "__main__":
    main()
