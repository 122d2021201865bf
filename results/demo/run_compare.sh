#!/usr/bin/env bash
# Reruns the README's demo comparison of the sink mitigations (2 CPU cores: about 30 min):
# four demo trainings (base, decor, sink logit, gated attention), the ACT head search on the base
# run, then scripts/compare.py on all of them in one process.
#   bash results/demo/run_compare.sh
# Checkpoints and logs go to outputs/demo_compare/<run>; the table is copied into results/demo/.
# A run whose checkpoint is already there is not trained again (delete the folder to retrain).
set -euo pipefail
cd "$(dirname "$0")/../.."
export WANDB_MODE=${WANDB_MODE:-disabled}
OUT=outputs/demo_compare
RES=results/demo

train() {  # run name, overrides...
  local name=$1; shift
  [ -f "$OUT/$name/checkpoints/last.ckpt" ] || python scripts/train.py "$@" hydra.run.dir="$OUT/$name"
}
train base
for method in decor sink_logit gated_attention; do
  train "$method" experiment="demo_$method"
done
# The demo LLM has 4 layers; the search's default candidates are the layers 2..L-2, i.e. layer 2.
python scripts/search_act_heads.py ckpt="$OUT/base/checkpoints/last.ckpt" hydra.run.dir="$OUT/act_search"
python scripts/compare.py runs.base="$OUT/base/checkpoints/last.ckpt" \
  runs.decor="$OUT/decor/checkpoints/last.ckpt" \
  runs.sink_logit="$OUT/sink_logit/checkpoints/last.ckpt" \
  runs.gated_attention="$OUT/gated_attention/checkpoints/last.ckpt" \
  act.heads_file="$OUT/act_search/act_heads.json" train_steps=20 hydra.run.dir="$OUT/compare"
for ext in csv json md; do cp "$OUT/compare/comparison.$ext" "$RES/comparison.$ext"; done
