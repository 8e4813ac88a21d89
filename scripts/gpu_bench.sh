#!/usr/bin/env bash
# The second on-device call, after scripts/gpu_check.sh passed: training and the whole-model benchmarks against
# PyTorch, each part under 9 minutes in one call (the same setup, timeouts, logs and summary as gpu_check.sh):
#
#   run(command="bash scripts/gpu_bench.sh training", carry=[".gpu_carry"], timeout_s=600)   # 50 steps x 3 models
#   run(command="bash scripts/gpu_bench.sh models-a", carry=[".gpu_carry"], timeout_s=600)   # resnet50 ... zfnet512
#   run(command="bash scripts/gpu_bench.sh models-b", carry=[".gpu_carry"], timeout_s=600)   # densenet121 ... vgg19
#   bash scripts/gpu_bench.sh --dry-run [training|models]   # here, on the emulator: --smoke sizes
#
# Each writes its Markdown section to $OUT/RESULTS-gpu.md, to be copied into bench/RESULTS.md with the device named.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=()
[ "${1:-}" = --dry-run ] && { dry=(--dry-run); shift; }
part=${1:-training}
case "$part" in
    training) stages="training:480" ;;
    models-a|models-b) stages="$part:480" ;;
    models) stages="models-smoke:480" ;;  # the dry run's stand-in for models-a and models-b
    *) echo "unknown part '$part' (training, models-a, models-b; models with --dry-run)"; exit 2 ;;
esac
GPU_CHECK_STAGES=$stages exec bash scripts/gpu_check.sh "${dry[@]}"
