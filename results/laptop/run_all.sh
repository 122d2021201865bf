#!/usr/bin/env bash
# Reruns every number of results/laptop/REPORT.md (2 CPU cores: 40-80 min per trained run).
#   bash results/laptop/run_all.sh [run ...]      runs: pretrained lambda0 lambda100 lambda1e4 lambda10
#                                                       sink_logit gated_attention act_search compare
#                                                       (after lambda0 lambda100 sink_logit gated_attention)
#   compression 16: c16_lambda0 c16_lambda100 c16_lambda10 c16_sink_logit c16_gated_attention c16_act_search c16_compare
#   a dev accent (below): dev_lambda0 dev_drop dev_swap dev_choice (after the dev runs)
# Needs: python scripts/install_weights.py (once), Debian espeak-ng and pocketsphinx-testdata.
# Checkpoints and logs go to outputs/laptop/<run>; summaries are copied into results/laptop/<run>.
# Rerunning a run that was killed before its test decode resumes it from its last step checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
export WANDB_MODE=${WANDB_MODE:-disabled}
OUT=outputs/laptop
# The CTC-warm-up recipe's runs; sections 2-7b of REPORT.md came from the earlier preset (results/laptop/<run>).
RES=${RES:-results/laptop/ctc_recipe}
STEPS=${STEPS:-}  # empty: the preset's trainer.max_steps

train_eval_analyze() {  # name, train overrides...
  local name=$1; shift
  if [ -f "$OUT/$name/checkpoints/last.ckpt" ] && [ ! -f "$OUT/$name/eval/test_wer.json" ]; then
    # Killed before its test decode (e.g. when a session ended): continue from its newest step
    # checkpoint with its own overrides instead of starting over.
    python scripts/train.py resume="$OUT/$name"
  else
    python scripts/train.py experiment=laptop_asr ${STEPS:+trainer.max_steps="$STEPS"} "$@" hydra.run.dir="$OUT/$name"
  fi
  local ckpt="$OUT/$name/checkpoints/last.ckpt"
  python scripts/eval.py ckpt="$ckpt" data=librivox hydra.run.dir="$OUT/$name/librivox"
  python scripts/analyze.py ckpt="$ckpt" num_samples=5 hydra.run.dir="$OUT/$name/analysis"
  collect "$name"
}

collect() {  # copy the small result files of a run into results/laptop/<run>
  local name=$1 dest="$RES/$1"
  rm -rf "$dest" && mkdir -p "$dest/figures"
  cp "$OUT/$name/.hydra/config.yaml" "$dest/config.yaml"  # method, compression, λ and seed for summary.py
  python results/laptop/merge_metrics.py "$OUT/$name" "$dest/train_metrics.csv"  # one log across resumes
  if [ -d "$OUT/$name/eval" ]; then
    cp "$OUT/$name/eval/test_wer.json" "$dest/espeak_test_wer.json"
    cp "$OUT/$name/eval/test_utterances.csv" "$dest/espeak_test_utterances.csv"
  fi
  if [ -d "$OUT/$name/librivox" ]; then
    cp "$OUT/$name/librivox/wer_table.json" "$dest/librivox_wer.json"
    cp "$OUT/$name/librivox/test_clean_utterances.csv" "$dest/librivox_utterances.csv"
  fi
  cp "$OUT/$name/analysis/summary.json" "$dest/sink_summary.json"
  cp "$(ls -d "$OUT/$name"/analysis/*/ | head -1)"*.png "$dest/figures/"
  # The trained parameters (LoRA, projector) and the run config, without optimizer state (~6 MB;
  # the format of averaged.ckpt), for scripts/eval.py and analyze.py ckpt= on another machine.
  python -c "import sys; from avsr_sinks.training.checkpoints import average_checkpoints as a; a([sys.argv[1]], sys.argv[2])" \
    "$OUT/$name/checkpoints/last.ckpt" "$dest/trained.ckpt"
}

trained() {  # a run's checkpoint: its last step where this machine trained it, else the kept trained.ckpt
  if [ -f "$OUT/$1/checkpoints/last.ckpt" ]; then echo "$OUT/$1/checkpoints/last.ckpt"; else echo "$RES/$1/trained.ckpt"; fi
}

act_search() {  # run-name prefix ("" for compression 4, c16_), layer where the base's <audio> sink peaks
  local p=$1
  python scripts/search_act_heads.py ckpt="$(trained "${p}lambda0")" layers="[$2]" budget=8 \
    generation.max_new_tokens=48 hydra.run.dir="$OUT/${p}act_search"
  cp "$OUT/${p}act_search/act_heads.json" "$RES/${p}act_search_heads.json"
}

compare() {  # run-name prefix ("" for compression 4, c16_); one table, measured in one process
  local p=$1
  python scripts/compare.py runs.base="$(trained "${p}lambda0")" runs.decor="$(trained "${p}lambda100")" \
    runs.sink_logit="$(trained "${p}sink_logit")" runs.gated_attention="$(trained "${p}gated_attention")" \
    act.heads_file="$OUT/${p}act_search/act_heads.json" \
    train_steps=10 generation.num_beams=4 generation.max_new_tokens=48 hydra.run.dir="$OUT/${p}compare"
  for ext in csv json md; do cp "$OUT/${p}compare/comparison.$ext" "$RES/${p}comparison.$ext"; done
}

voices() {  # Hydra list of the accents' voices with the preset's 15 variants (none of the test voices')
  local out="" accent variant
  for accent in $1; do
    for variant in m1 m2 m3 m4 m6 m8 f1 f2 f4 klatt klatt2 klatt3 klatt4 klatt5 klatt6; do out+="${out:+,}$accent+$variant"; done
  done
  echo "[$out]"
}
# A dev accent that stands in for the unheard test accents: en-gb-scotland, the training accent whose
# phonemes differ most from the other five (results/laptop/dev_accent.py, dev_accent.json), left out
# of training and speaking the validation split. Augmentations are compared by this validation WER;
# the test accents are read only by the run with all six accents that the choice leads to.
DEV_ACCENT=(data.espeak.train_voices="$(voices "en-us en-gb en-gb-x-rp en-us-nyc en-gb-x-gbclan")"
            data.espeak.val_voices="$(voices en-gb-scotland)")

run() {
  case "$1" in
    # Before fine-tuning: one step at learning rate 0 saves the untouched model (LoRA B = 0: a no-op;
    # the projector is at its random initialisation).
    pretrained) python scripts/train.py experiment=laptop_asr optim.lr=0 trainer.max_steps=1 run_test=false \
                  hydra.run.dir="$OUT/pretrained"
                python scripts/analyze.py ckpt="$OUT/pretrained/checkpoints/last.ckpt" num_samples=5 \
                  hydra.run.dir="$OUT/pretrained/analysis"
                collect pretrained ;;
    lambda0)          train_eval_analyze lambda0 decor.lambda=0 ;;
    # Whisper base's encoder (python scripts/install_weights.py --whisper-base) instead of tiny.en: the
    # projector alone reads the held-out voices 6 points better after 1000 CTC steps (53.4 vs 59.6 %,
    # ctc_projector_probe_base_train30000_more_voices.json); 900 + 2700 steps fit the 90 minutes.
    lambda0_whisper_base) train_eval_analyze lambda0_whisper_base decor.lambda=0 \
                        model.audio_encoder.path='${data.cache_dir}/weights/whisper-base' \
                        model.projector.ctc_warmup_steps=900 trainer.max_steps=3600 ;;
    # Respelt training sentences: each distinct phoneme of a training utterance swapped for another of
    # its class with probability 0.1 (data.espeak.phoneme_swap; REPORT section 10): more pronunciations
    # than the six training accents, against the held-out accents' gap (section 9). Test WER 33.4 %: no gain.
    lambda0_respelt)  train_eval_analyze lambda0_respelt decor.lambda=0 data.espeak.phoneme_swap=0.1 ;;
    dev_lambda0)      train_eval_analyze dev_lambda0 decor.lambda=0 "${DEV_ACCENT[@]}" ;;
    dev_drop)         train_eval_analyze dev_drop decor.lambda=0 "${DEV_ACCENT[@]}" data.espeak.phoneme_drop=0.1 ;;
    dev_swap)         train_eval_analyze dev_swap decor.lambda=0 "${DEV_ACCENT[@]}" data.espeak.phoneme_swap=0.1 ;;
    # The choice (results/laptop/dev_choice.py, dev_choice.json): each dev run's final state decodes
    # the dev accent's validation split as the test split is decoded (beam 4), one CSV per run.
    dev_choice)       for r in dev_lambda0 dev_drop dev_swap; do
                        [ -e "$(trained "$r")" ] || continue
                        python scripts/eval.py ckpt="$(trained "$r")" split=val generation.num_beams=4 \
                          hydra.run.dir="$OUT/$r/dev"
                        cp "$OUT/$r/dev/val_clean_utterances.csv" "$RES/$r/dev_val_utterances.csv"
                      done
                      python results/laptop/dev_choice.py ;;
    lambda10)         train_eval_analyze lambda10 decor.lambda=10 ;;
    lambda100)        train_eval_analyze lambda100 decor.lambda=100 ;;
    lambda1e4)        train_eval_analyze lambda1e4 decor.lambda=10000 ;;
    c16_lambda0)      train_eval_analyze c16_lambda0 compression=16 decor.lambda=0 ;;
    c16_lambda100)    train_eval_analyze c16_lambda100 compression=16 decor.lambda=100 ;;
    c16_lambda10)     train_eval_analyze c16_lambda10 compression=16 decor.lambda=10 ;;
    # Second seeds (initialisation, data order, dropout; the corpus is data.espeak.seed's): the WER
    # difference between λ 0 and 100 is read against the spread between seeds.
    c16_lambda0_seed2)   train_eval_analyze c16_lambda0_seed2 compression=16 decor.lambda=0 seed=1235 ;;
    c16_lambda100_seed2) train_eval_analyze c16_lambda100_seed2 compression=16 decor.lambda=100 seed=1235 ;;
    # Sink logits move about their lr per step (own AdamW group): 0.03 lets them travel from -8 to
    # the attention logits' scale within the cosine schedule (at the LLM's 1e-3, at most ~1.2).
    sink_logit)       train_eval_analyze sink_logit baseline.kind=sink_logit optim.sink_logit_lr=0.03 ;;
    c16_sink_logit)   train_eval_analyze c16_sink_logit compression=16 baseline.kind=sink_logit \
                        optim.sink_logit_lr=0.03 ;;
    gated_attention)  train_eval_analyze gated_attention baseline.kind=gated_attention ;;
    c16_gated_attention) train_eval_analyze c16_gated_attention compression=16 baseline.kind=gated_attention ;;
    # ACT on the λ = 0 model: greedy search over the heads of the layer where its <audio> sink peaks
    # (0-indexed; 24 in 3 of the 5 analysed utterances of the CTC recipe's c16_lambda0, 23 with the
    # earlier preset's) by validation WER, 8 decodes of 200 utterances.
    act_search)       act_search "" 24 ;;
    c16_act_search)   act_search c16_ 24 ;;
    compare)          compare "" ;;
    c16_compare)      compare c16_ ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

for name in "${@:-pretrained lambda0 lambda100}"; do
  for n in $name; do run "$n"; done
done
