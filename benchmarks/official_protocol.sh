#!/usr/bin/env bash
# ResNet-18, recipe medmnist-v2 (the official protocol), on the real BreastMNIST and RetinaMNIST
# 28 px files, 3 seeds each; fp32 (--amp off) to keep the official arithmetic.
# Usage: MEDMNIST_ROOT=../shared/data/medmnist bash benchmarks/official_protocol.sh [OUT_DIR]
set -euo pipefail
out=${1:-bench_out/official}
for dataset in breastmnist retinamnist; do
  for seed in 0 1 2; do
    medmnist-lab train "$dataset" --model resnet18 --recipe medmnist-v2 --seed "$seed" --amp off \
      --out-dir "$out" --name "v2-s$seed" --no-progress
  done
done
python benchmarks/summarize_runs.py "$out"
