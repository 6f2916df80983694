#!/usr/bin/env bash
# DCGAN synthetic data on the real BreastMNIST 28 px, reproducible end to end:
#   1. train a conditional and a per-class DCGAN (300 epochs, seed 0), evaluate both (FID/PR/CAS);
#   2. sample from the conditional one with --balance (tops the minority class up to the majority);
#   3. ResNet-18, recipe medmnist-v2, 3 seeds, with those samples added to the training split.
# The runs without synthetic data are those of benchmarks/official_protocol.sh (same recipe, seeds).
# Usage: MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=1 bash benchmarks/synthetic_study.sh OUT_DIR
set -euo pipefail
out=$1
mkdir -p "$out"
for mode in conditional per-class; do
  gan="$out/gan-$mode"
  [ -f "$gan/last.pt" ] || /usr/bin/time -f "gan $mode: %e s wall" \
    medmnist-lab gan train breastmnist --mode "$mode" --epochs 300 --seed 0 --out "$gan" --no-progress
  [ -f "$gan/quality.json" ] || medmnist-lab gan evaluate "$gan/last.pt"
done
syn="$out/synthetic_balance.npz"
[ -f "$syn" ] || medmnist-lab gan sample "$out/gan-conditional/last.pt" --balance -o "$syn"
for seed in 0 1 2; do
  medmnist-lab train breastmnist --model resnet18 --recipe medmnist-v2 --seed "$seed" \
    --synthetic "$syn" --out-dir "$out/runs" --name "v2-syn-s$seed" --no-progress
done
