#!/usr/bin/env bash
# The GPU figures of issue 11, on one CUDA GPU, in one go (under 8 minutes on an H100/H200-class GPU):
#   1. zero-shot evaluation of the ModelNet10 test split (908 shapes x 6 views): shapes/s in fp32 and bf16,
#      and rendering throughput on the GPU (6 and 10 views)            -> benchmarks/bench_zeroshot.py
#   2. the 16-shot full protocol (ModelNet10, 100 epochs, 10 views, full test split): wall time, fp32 and bf16
#      (target <= 60 s)                                                  -> benchmarks/bench_fewshot.py
#   3. pre-training pairs/s at batch 256 with bf16 autocast, and peak GPU memory, with and without
#      gradient checkpointing (target >= 3,000 pairs/s)                  -> benchmarks/bench_pretrain.py
# ViT-B-32 with random weights (the compute of the real model; nothing is downloaded). Needs only `make install`
# and the data in ../shared/data (DATA=... elsewhere).
#
# usage: bash benchmarks/gpu.sh [--smoke] [--device cuda:0]
#   --smoke: the same code paths, tiny (tiny-ViT-test, a few shapes, 1-2 steps/epochs) on the CPU: well under a minute.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DATA="${DATA:-$ROOT/../shared/data}"
SMOKE=0
DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --device) DEVICE="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  MODEL=tiny-ViT-test
  ZS=(--limit 8 --batch 4)
  FS=(--shots 1 --epochs 2 --limit-test 10 --val-per-class 1 --no-plots)
  PT=(--batch 4 --steps 1 --amp bf16)
else
  MODEL=ViT-B-32
  ZS=(--limit 0 --batch 64)
  FS=(--shots 16 --epochs 100 --limit-test 0)
  PT=(--batch 256 --steps 10 --amp bf16)
  "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "gpu.sh: no CUDA GPU visible to torch $("$PY" -c 'import torch; print(torch.__version__)') (run with --smoke for the CPU check)" >&2
    exit 1; }
fi
[ -d "$DATA/modelnet10" ] || { echo "gpu.sh: no ModelNet10 in $DATA (set DATA=...)" >&2; exit 1; }

export HF_HUB_OFFLINE=1
unset CLIP2POINT_WEIGHTS
CLIP2POINT_CACHE_DIR="$(mktemp -d)"  # a fresh, empty view-feature cache: every figure is a cold run
export CLIP2POINT_CACHE_DIR
trap 'rm -rf "$CLIP2POINT_CACHE_DIR"' EXIT
cd "$ROOT"
START=$SECONDS

step() { echo; echo "== $1 ($((SECONDS - START)) s so far)"; }

[ "$SMOKE" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

step "1. zero-shot eval, ModelNet10 test, fp32 vs bf16, and rendering on $DEVICE"
"$PY" benchmarks/bench_zeroshot.py --data "$DATA" --device "$DEVICE" --model "$MODEL" --precisions fp32 bf16 "${ZS[@]}"

for precision in fp32 bf16; do
  step "2. 16-shot full protocol on $DEVICE, $precision"
  "$PY" benchmarks/bench_fewshot.py --data "$DATA" --device "$DEVICE" --model "$MODEL" --precision "$precision" \
      "${FS[@]}"
done

step "3. pre-training pairs/s on $DEVICE (bf16 autocast)"
"$PY" benchmarks/bench_pretrain.py --device "$DEVICE" --model "$MODEL" "${PT[@]}"

echo
echo "gpu.sh: done in $((SECONDS - START)) s ($([ "$SMOKE" = 1 ] && echo "smoke run on the CPU" || echo "$DEVICE"))"
