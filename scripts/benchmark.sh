#!/usr/bin/env bash
# Makes BENCHMARK.md: both embedded priors, 7 tasks x 6 methods x 200 test images, each with and without
# ReGuidance, under the CPU protocol (reduced budgets, options tuned on validation images: see
# src/reguidance/bench/defaults.py), network in bf16. One single-threaded process per prior, side by side
# (about 1.5 h on 2 cores). Resumable: rerun to continue after a kill.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/benchmark}
IDS=${IDS:-0:200}
mkdir -p "$OUT"
ARGS=(--protocol cpu --tasks box16,box20,box16c,box20c,sr4,sr8,deblur --methods pinv,dps,daps,diffpir,reddiff,pigdm
      --ids "$IDS" --dtype bf16 --batch-size 25)
for prior in mnist fashion_mnist; do
  OMP_NUM_THREADS=1 "$BIN/reguidance" bench --prior "$prior" "${ARGS[@]}" --out "$OUT/$prior" \
    --json "$OUT/$prior.json" > "$OUT/$prior.log" 2>&1 &
done
wait
"$BIN/reguidance" bench-report --run mnist="$OUT/mnist" --run fashion_mnist="$OUT/fashion_mnist" --into BENCHMARK.md
