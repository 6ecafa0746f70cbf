#!/usr/bin/env bash
# Makes BENCHMARK.md: both embedded priors, 5 hard tasks x 6 methods (50 MNIST and 25 Fashion-MNIST test images),
# each candidate with and without ReGuidance, under the CPU protocol (reduced budgets; every method's options and
# the wrapper's tuned on each prior's own validation images by `make tune`), network in fp32. MNIST also runs the
# ablations (renoise, fresh, more) on every task, as two torchrun processes; Fashion-MNIST beside them in one
# process; one thread each (about 1 h on 2 cores). Resumable: rerun to continue after a kill.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/benchmark}
IDS=${IDS:-0:50}
FASHION_IDS=${FASHION_IDS:-0:25}
mkdir -p "$OUT"
ARGS=(--protocol cpu --tasks box20,box20c,sr4,sr8,deblur --methods pinv,dps,daps,diffpir,reddiff,pigdm
      --dtype fp32 --batch-size 25)
OMP_NUM_THREADS=1 "$BIN/torchrun" --standalone --nproc_per_node 2 "$BIN/reguidance" bench --prior mnist "${ARGS[@]}" \
  --ids "$IDS" --ablations --out "$OUT/mnist" --json "$OUT/mnist.json" > "$OUT/mnist.log" 2>&1 &
OMP_NUM_THREADS=1 "$BIN/reguidance" bench --prior fashion_mnist "${ARGS[@]}" --ids "$FASHION_IDS" \
  --out "$OUT/fashion_mnist" --json "$OUT/fashion_mnist.json" > "$OUT/fashion_mnist.log" 2>&1 &
wait
"$BIN/reguidance" bench-report --run mnist="$OUT/mnist" --run fashion_mnist="$OUT/fashion_mnist" --into BENCHMARK.md \
  --pictures docs --summary-into README.md
