#!/usr/bin/env bash
# Makes the CPU protocol's tuned tables, one per embedded prior, each on its own validation split
# (src/reguidance/assets/bench/tuned_cpu_<prior>.json): every variant tuned alike (--ablations: the candidate's step
# size, then ReGuidance, renoise and fresh on the wrapper's grid with the candidate fixed, then `more` on the
# method's grid at its own budget; 12 settings per grid, the same rule, 16 validation images; see
# reguidance.bench.tune). The nonlinear satblur is swept with the methods that take it (dps, daps; the others are
# skipped, saying so). One
# single-threaded process per prior, side by side. Resumable: rerun to continue. About 5 h per prior on one core.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/tune}
IDS=${IDS:-0:16}
mkdir -p "$OUT"
for prior in mnist fashion_mnist; do
  OMP_NUM_THREADS=1 "$BIN/reguidance" tune-defaults --prior "$prior" --protocol cpu --ids "$IDS" --dtype fp32 \
    --batch-size 16 --ablations --tasks box20,box20c,sr4,sr8,deblur,satblur \
    --methods pinv,dps,daps,diffpir,reddiff,pigdm --out "$OUT/$prior" \
    --write "src/reguidance/assets/bench/tuned_cpu_$prior.json" > "$OUT/$prior.log" 2>&1 &
done
wait
