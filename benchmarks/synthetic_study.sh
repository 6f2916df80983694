#!/usr/bin/env bash
# DCGAN synthetic data on the real BreastMNIST 28 px, reproducible end to end:
#   classifiers: train a conditional DCGAN (300 epochs, seed 0), sample from it with --balance
#                (tops the minority class up to the majority class count), then ResNet-18 with
#                recipe medmnist-v2, 3 seeds, with those samples added to the training split;
#   gans:        train a per-class DCGAN the same way and evaluate both GANs (FID, precision/recall, CAS).
# The runs without synthetic data are those of benchmarks/official_protocol.sh (same recipe, seeds).
# Finished steps are skipped, so the script can be re-run after an interruption; the two parts
# can run side by side (one core each).
# Usage: MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=1 bash benchmarks/synthetic_study.sh OUT_DIR [classifiers|gans|all]
set -euo pipefail
out=$1
part=${2:-all}
mkdir -p "$out"

train_gan() {  # resumable; skipped once finished (summary.json is written last)
  local gan="$out/gan-$1"
  local where=(--out-dir "$out" --name "gan-$1")  # the run folder $gan
  [ -f "$gan/summary.json" ] && return 0
  if [ -f "$gan/last.pt" ]; then
    where=(--resume "$gan")
  fi
  medmnist-lab gan train breastmnist --mode "$1" --epochs 300 --seed 0 "${where[@]}" --no-progress
}

if [ "$part" = classifiers ] || [ "$part" = all ]; then
  train_gan conditional
  syn="$out/synthetic_balance.npz"
  [ -f "$syn" ] || medmnist-lab gan sample "$out/gan-conditional/last.pt" --balance -o "$syn"
  for seed in 0 1 2; do
    [ -f "$out/runs/breastmnist_28/resnet18/v2-syn-s$seed/summary.json" ] && continue
    medmnist-lab train breastmnist --model resnet18 --recipe medmnist-v2 --seed "$seed" \
      --synthetic "$syn" --out-dir "$out/runs" --name "v2-syn-s$seed" --no-progress
  done
fi
if [ "$part" = gans ] || [ "$part" = all ]; then
  train_gan conditional
  train_gan per-class
  for mode in conditional per-class; do
    [ -f "$out/gan-$mode/quality.json" ] || medmnist-lab gan evaluate "$out/gan-$mode/last.pt"
  done
fi
