#!/usr/bin/env bash
# ResNet-18, recipe medmnist-v2 (or $RECIPE), with an augmentation policy, 3 seeds, on a real 28 px file.
# Usage: MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=1 [RECIPE=short] \
#          bash benchmarks/augment_study.sh OUT_DIR DATASET POLICY [SEEDS...]
# Compare with the `none` runs of benchmarks/official_protocol.sh:
#   medmnist-lab results import bench_out/official OUT_DIR -o OUT_DIR.db
#   medmnist-lab results table OUT_DIR.db --group-by dataset,augment --baseline augment=none
# (or, in one step: medmnist-lab study run augment --datasets DATASET)
set -euo pipefail
out=$1
dataset=$2
policy=$3
shift 3
seeds=${*:-0 1 2}
recipe=${RECIPE:-medmnist-v2}
tag=${recipe/medmnist-v2/v2}  # run names v2-POLICY-sSEED, as the first studies used
for seed in $seeds; do
  [ -f "$out/${dataset}_28/resnet18/$tag-$policy-s$seed/summary.json" ] && continue
  medmnist-lab train "$dataset" --model resnet18 --recipe "$recipe" --augment "$policy" --seed "$seed" \
    --out-dir "$out" --name "$tag-$policy-s$seed" --no-progress
done
