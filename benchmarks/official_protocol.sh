#!/usr/bin/env bash
# ResNet-18, recipe medmnist-v2 (the official protocol), 3 seeds, on the real 28 px files.
# Engine defaults apply (bf16 autocast on CPUs with avx512_bf16, fp32 elsewhere).
# Usage: MEDMNIST_ROOT=../shared/data/medmnist bash benchmarks/official_protocol.sh OUT_DIR DATASET...
# (run one chain per dataset with OMP_NUM_THREADS=1 to use one core each), then
#        medmnist-lab results import OUT_DIR -o OUT_DIR.db && medmnist-lab results table OUT_DIR.db
# (the same grid as a study: medmnist-lab study run resnet18-vs-50 --set model=resnet18 --datasets DATASET...)
set -euo pipefail
out=$1
shift
for dataset in "$@"; do
  for seed in 0 1 2; do
    medmnist-lab train "$dataset" --model resnet18 --recipe medmnist-v2 --seed "$seed" \
      --out-dir "$out" --name "v2-s$seed" --no-progress
  done
done
