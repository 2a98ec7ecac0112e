#!/usr/bin/env bash
# One-command GPU readiness check of the R50 paper configs (<= 8 minutes on one GPU): AMP training s/iter and
# peak memory at the paper's input sizes, streaming FPS at 360x640 (AMP and fp32), host syncs per frame, and a
# 2-GPU DDP run when 2 GPUs exist. See benchmarks/gpu_check.py for what is measured (the same as
# `python -m benchmarks.gpu_check` from the repository root; this script is the entry point the docs name).
#   bash benchmarks/gpu_check.sh                      # on a GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --smoke # tiny sizes on the CPU (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m benchmarks.gpu_check "$@"
