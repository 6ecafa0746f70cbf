#!/usr/bin/env bash
# Makes the CPU protocol's tuned tables, one per embedded prior, each on its own validation split
# (src/reguidance/assets/bench/tuned_cpu_<prior>.json): every method's grid and the wrapper's, widened at edges
# (see reguidance.bench.tune). One single-threaded process per prior, side by side. Resumable: rerun to continue.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/tune}
IDS=${IDS:-0:8}
for prior in mnist fashion_mnist; do
  OMP_NUM_THREADS=1 "$BIN/reguidance" tune-defaults --prior "$prior" --protocol cpu --ids "$IDS" --dtype fp32 \
    --batch-size 8 --out "$OUT/$prior" --write "src/reguidance/assets/bench/tuned_cpu_$prior.json" \
    > "$OUT.$prior.log" 2>&1 &
done
wait
