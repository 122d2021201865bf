#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine, at most 8 minutes (each step has its own time
# limit, 470 s in all): the tests marked gpu, the benchmarks at full depth on CUDA (a training
# step against the reference's way, the feature cache's lambda-sweep step, the decorrelation
# loss's overhead at Llama-3.2-1B's width), a short bf16 training of the demo at a larger size and
# the decoding benchmark on its checkpoint. It ends with one table: each step, its status, its
# time and its result line; the full logs stay in the folder it names.
#
#   benchmarks/gpu_check.sh          # CUDA (on a fresh machine first: pip install -e ".[dev]")
#   benchmarks/gpu_check.sh --cpu    # the same steps on the CPU at CI size (.ci/run runs it)
#
# Exit status 1 when a step failed or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled
logs=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")

if [ "${1:-}" = "--cpu" ]; then
  device=cpu
  export AVSR_GPU_TESTS_ON_CPU=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  machine="CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(nproc --all) cores"
  slack=4  # the limits are the GPU's; a shared CPU gets four times as long
  paper_size=(--shapes ci --depth 0.05 --max-frames 200 --repeats 1)
  decor_size=(--hidden 64 --layers 3 --tokens 32 --batch 2 --steps 1)
  # The demo's corpus at 16/4/4 utterances and models of a few thousand parameters.
  demo_size=(data.synthetic.n_train=16 data.synthetic.n_val=4 data.synthetic.n_test=4 data.synthetic.max_words=2
             data.num_workers=0 model.llm.tiny.hidden_size=16 model.llm.tiny.num_layers=2 model.llm.tiny.num_heads=2
             model.llm.tiny.num_kv_heads=1 model.llm.tiny.intermediate_size=32 model.audio_encoder.config.d_model=16
             model.audio_encoder.config.encoder_layers=1 model.audio_encoder.config.encoder_attention_heads=2
             model.audio_encoder.config.encoder_ffn_dim=32 model.video_encoder.config.layers=1
             model.video_encoder.config.dim=16 model.video_encoder.config.heads=2 model.video_encoder.config.ffn_dim=32
             model.video_encoder.config.resnet_widths=[2,2,4,4] generation.num_beams=2 generation.max_new_tokens=4
             trainer.max_epochs=1 trainer.accelerator=cpu "data.cache_dir=$logs/cache")
  decode_size=(--utterances 4 --repeats 1)
else
  device=cuda
  if ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA device (or torch without CUDA); benchmarks/gpu_check.sh --cpu runs the CPU version"; exit 1
  fi
  machine="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | paste -sd ';'), torch $(python -c 'import torch; print(torch.__version__)')"
  slack=1
  paper_size=()  # full depth, LRS2's batch budget
  decor_size=(--device cuda --hidden 2048 --layers 16 --tokens 256 --batch 8 --steps 5)
  # The demo with a 4x wider, 2x deeper LLM and 4x wider encoders, 3 epochs.
  demo_size=(model.llm.tiny.hidden_size=256 model.llm.tiny.num_layers=8 model.llm.tiny.num_heads=8
             model.llm.tiny.num_kv_heads=4 model.llm.tiny.intermediate_size=1024 model.audio_encoder.config.d_model=256
             model.audio_encoder.config.encoder_layers=4 model.audio_encoder.config.encoder_ffn_dim=1024
             model.video_encoder.config.layers=4 model.video_encoder.config.dim=256 model.video_encoder.config.ffn_dim=1024
             model.video_encoder.config.resnet_widths=[16,32,64,128] trainer.max_epochs=3 trainer.accelerator=gpu)
  decode_size=(--utterances 100 --repeats 1)
fi

rows=()
failed=0
# step NAME LIMIT_S RESULT_PATTERN COMMAND...: run COMMAND within LIMIT_S (times the slack), keep
# its log, and take the last line matching RESULT_PATTERN (grep -E) as its result.
step() {
  local name=$1 limit=$2 pattern=$3 status started seconds result
  shift 3
  started=$(date +%s)
  limit=$(( limit * slack ))
  if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then status=ok
  else
    [ $? -eq 124 ] && status="TIMEOUT (${limit} s)" || status=FAILED
    failed=1
  fi
  seconds=$(( $(date +%s) - started ))
  result=$(grep -E "$pattern" "$logs/$name.log" | tail -1 | tr '|' '/')
  rows+=("| $name | $status | $seconds | ${result:-see $logs/$name.log} |")
}

step tests 80 "passed|failed|skipped" python -m pytest -q -m gpu tests/test_gpu.py
step bench_train_step 80 "vs reference:" python benchmarks/bench_train_step.py "${paper_size[@]}"
step bench_feature_cache 60 "speed-up with the cache" python benchmarks/bench_feature_cache.py "${paper_size[@]}"
step bench_decor_overhead 30 "ratio" python benchmarks/bench_decor_overhead.py "${decor_size[@]}"
step demo_bf16_training 160 "Test WER" python scripts/train.py "${demo_size[@]}" trainer.precision=bf16-mixed \
  trainer.enable_progress_bar=false logger.wandb.enabled=false "hydra.run.dir=$logs/demo"
step bench_decode 60 "utterances/s vs batch 1" python benchmarks/bench_decode.py --ckpt "$logs/demo/checkpoints/last.ckpt" \
  "${decode_size[@]}"

echo
echo "gpu_check ($device) $(date -u +%Y-%m-%d), $machine; logs in $logs"
echo
echo "| step | status | seconds | result |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $failed
