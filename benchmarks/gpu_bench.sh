#!/usr/bin/env bash
# The torch baseline on an NVIDIA GPU, with NVML power: run from the repository root on the
# GPU machine, then commit the report and regenerate docs/benchmarks.md (see that page).
#
#   bash benchmarks/gpu_bench.sh [MODEL] [OUT.json]
#
# MODEL defaults to `synthetic` (random weights, the shipped architecture, 360x480, 90 %
# filter-wise sparse); pass the bundled model's name or a .sentei file for a trained one.
# With TEACHER=1 the bundled dense teacher (batch-norm folded) is timed the same way into
# OUT's name with -teacher before .json.
# Needs: pip install -e '.[train,bench]' (torch with CUDA, nvidia-ml-py for NVML power).
set -euo pipefail
MODEL="${1:-synthetic}"
OUT="${2:-benchmarks/results/gpu-$(date +%Y%m%d).json}"
PY="${PYTHON:-python}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA GPU')"
"$PY" -c "import pynvml" 2>/dev/null || echo "note: nvidia-ml-py missing, the report will say power: none" >&2
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv || true
# 200 timed frames per precision, each run >= 10 s so that NVML power has many readings (from the
# energy counter where the GPU has one, Volta and newer; else the 1 s averaged power reading)
"$PY" -m sentei bench --model "$MODEL" --backend torch --device cuda --precision fp32,fp16 \
    --frames 200 --warmup 20 --power auto --idle 3 --min-seconds 10 --json "$OUT"
echo "report written: $OUT"
if [ "${TEACHER:-0}" = 1 ]; then
  "$PY" -m sentei bench --model teacher --backend torch --device cuda --precision fp32,fp16 \
      --frames 200 --warmup 20 --power auto --idle 3 --min-seconds 10 --json "${OUT%.json}-teacher.json"
  echo "report written: ${OUT%.json}-teacher.json"
fi
