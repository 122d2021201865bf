#!/usr/bin/env bash
# Short ablations of the laptop_asr recipe (issue: real weights must learn). 600 steps each, the
# cosine schedule decaying to 0 at 600, validation loss and WER every 150 steps; one thread each
# so that two run side by side on the 2-core machine; a step checkpoint every 100 steps, from which
# the same command resumes a run that a session's end killed:
#   bash results/laptop/ablations/run.sh NAME [NAME ...]
# Logs and checkpoints: outputs/laptop/ablations/NAME; results/laptop/ablations/curves.py plots them.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export WANDB_MODE=${WANDB_MODE:-disabled} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
OUT=outputs/laptop/ablations
STEPS=${STEPS:-600}
VAL_EVERY=${VAL_EVERY:-150}

ablation() {  # name, overrides...; a run with a checkpoint continues from it (a killed session's)
  local name=$1; shift
  if compgen -G "$OUT/$name/checkpoints/*.ckpt" > /dev/null; then
    python scripts/train.py resume="$OUT/$name"
    return
  fi
  python scripts/train.py experiment=laptop_asr trainer.max_steps="$STEPS" +trainer.val_check_interval="$VAL_EVERY" \
    trainer.check_val_every_n_epoch=null checkpoint.every_n_steps=100 run_test=false "$@" hydra.run.dir="$OUT/$name"
}

run() {
  case "$1" in
    base)          ablation base ;;                                        # the preset as it was
    lora_all)      ablation lora_all 'model.llm.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]' ;;
    data10x)       ablation data10x data.espeak.n_train=30000 ;;                  # 10x the sentences
    projector_norm) ablation projector_norm model.projector.match_embedding_norm=true ;;
    whisper_base)  ablation whisper_base 'model.audio_encoder.path=${data.cache_dir}/weights/whisper-base' ;;
    lr3e-3)        ablation lr3e-3 optim.lr=3.0e-3 ;;
    lora_all_data10x) ablation lora_all_data10x data.espeak.n_train=30000 \
                     'model.llm.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]' ;;
    lora_all_data10x_voices) ablation lora_all_data10x_voices data.espeak.n_train=30000 \
                     'model.llm.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]' \
                     "+data.espeak.train_voices=$(python -c 'from avsr_sinks.data.espeak_corpus import MORE_TRAIN_VOICES as v; print("[" + ",".join(v) + "]")')" ;;
    center)        ablation center model.projector.center_tokens=true ;;        # no shared vector in the audio tokens
    ctc)           ablation ctc model.projector.ctc_weight=1.0 ;;              # projector spells the LLM's tokens
    ctc_warmup)    ablation ctc_warmup model.projector.ctc_warmup_steps=1200 ;;   # that CTC alone first, then the LLM
    batch2x)       ablation batch2x data.max_frames=800 ;;                          # half the updates per utterance
    *) echo "unknown ablation $1" >&2; exit 2 ;;
  esac
}

for name in "$@"; do run "$name"; done
