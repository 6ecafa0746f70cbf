#!/usr/bin/env bash
# The study of issue 19, one command per table; each table is sharded (torchrun, NPROC processes) and resumable
# (rerun the same command after a kill: finished images are skipped, never recomputed; never pass --overwrite).
#
#   scripts/study.sh reference   the PRIMARY table: every base method at its own reference budget (the configs'
#                                default_steps: DPS 1000, DAPS 200 x 5 ODE x 100 Langevin, DiffPIR 100 (20 on the
#                                box tasks), RED-diff 50, PiGDM 100; wrapper 100 inversion + 100 DPS steps), with
#                                the ablations (renoise, fresh, more) and the sanity rows (mean, retrieval);
#                                no `more` for DPS there: at 1000 steps it already takes every level of the chain
#   scripts/study.sh cpu         the SECOND table, labelled "starved": the CPU protocol's reduced budgets (DPS 50,
#                                DAPS 20 x 2 x 50, DiffPIR 20, RED-diff 30, PiGDM 20; wrapper 10 + 20) with the
#                                options `make tune` chose on validation images
#   scripts/study.sh tune        the validation sweeps behind the cpu table, every variant tuned (scripts/tune.sh)
#   scripts/study.sh equal       the EQUAL-TUNING table: the CPU protocol's budgets on the headline tasks
#                                (EQUAL_TASKS, default box20,sr4,sr8,deblur,satblur) with DPS and DAPS
#                                (EQUAL_METHODS), every variant -- the candidate, ReGuidance, renoise, fresh,
#                                more -- tuned by the same rule on TUNE_IDS (16) validation images
#                                (`tune-defaults --ablations`, one process per method), the table written to
#                                $OUT/equal/tuned_<prior>.json, then the benchmark run with it (`bench --tuned`)
#
# Tasks: box20 (random position), sr4, sr8, deblur (sigma_y 0.2: the high-noise deblur), box20c (the unidentifiable
# case, labelled so in reguidance.tasks) with pinv, dps, daps, diffpir, reddiff, pigdm, mean, retrieval; then the
# nonlinear satblur (tanh(2 blur(x))) with dps, daps, mean, retrieval only (the others need a linear operator).
# Folders: $OUT/<table>/<prior>; each holds walltime.jsonl, one line per command with the seconds it took, and the
# table's report is $OUT/<table>/REPORT.md (BENCHMARK.md is regenerated last, by hand, from these folders).
#
# Cost on 2 CPU cores (estimated from per-evaluation costs: one network evaluation with its gradient, batch 16,
# one thread, is about 0.017 s per image on an idle core (DPS-1000 ~17 s per MNIST image, issue 19), about half that
# without the gradient; measured 0.17 s with and 0.09 s without on this machine at load 11 on 2 cores, so divide by
# the load you see), per image and task, candidate + ReGuidance + renoise + fresh + more:
#   DPS ~43 s, DAPS ~29 s, PiGDM ~12 s, DiffPIR ~10 s, RED-diff ~8 s, pinv / mean / retrieval ~6 s each (wrapper
#   and ablations; retrieval itself is 0.05-0.3 s per image over the 55,000 training images)
#   measured 2026-12-02 (AMD EPYC, 2 processes, batch 10): MNIST sr8, dps,daps,pinv, ids 0:100 (no `more` for DPS)
#              took 4643 s; DPS-1000 is 30 s per image, ReGuidance on it 4.5 s more, DAPS 200 x 5 x 100 14 s.
#   reference: ~120 s per (task, image) on one core, so MNIST 6 tasks x 100 images on 2 processes ~10 h, satblur
#              ~1.2 h; Fashion-MNIST (50 images) about half: ~16 h in all. Cut methods before images:
#              METHODS=pinv,dps,daps,mean,retrieval (~7 h), never fewer images than IDS=0:100 / FASHION_IDS=0:50.
#   cpu:       ~1.5 h for both priors (the benchmark's old budget, plus the sanity rows and satblur).
#   equal:     tuning ~10 min per (task, method) on one core (MNIST: 5 tasks x 2 methods, 2 processes, ~50 min),
#              then the benchmark, ~20 s per image and task on one core (MNIST 100 images: ~30 min on 2).
#   tune:      12 settings per variant x 5 variants x 16 validation images per (task, method), ~5 h per prior
#              (both priors side by side).
# Smoke test (a few seconds per image): OUT=/tmp/study PRIORS=mnist IDS=0:2 NPROC=1 TASKS=sr8 \
#   EXTRA="--steps 2 --inversion-steps 1 --dps-steps 1" scripts/study.sh cpu
# On a lent GPU the same commands run unchanged: DEVICE=cuda and NPROC = the number of GPUs are found by themselves.
set -euo pipefail
TABLE=${1:?usage: scripts/study.sh reference|cpu|tune|equal}
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/study}
IDS=${IDS:-0:100}
FASHION_IDS=${FASHION_IDS:-0:50}
METHODS=${METHODS:-pinv,dps,daps,diffpir,reddiff,pigdm,mean,retrieval}
NONLINEAR_METHODS=${NONLINEAR_METHODS-dps,daps,mean,retrieval}
TASKS=${TASKS:-box20,sr4,sr8,deblur,box20c}
PRIORS=${PRIORS:-mnist fashion_mnist}
EXTRA=${EXTRA:-}  # more bench flags, e.g. a smoke test: EXTRA="--steps 2 --inversion-steps 1 --dps-steps 1"
if [[ -z "${DEVICE:-}" ]] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  DEVICE=cuda
  NPROC=${NPROC:-$(nvidia-smi -L | wc -l)}
fi
DEVICE=${DEVICE:-cpu}
NPROC=${NPROC:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# timed DIR CMD...: runs CMD and appends {"command", "seconds", ...} to DIR/walltime.jsonl (also after a failure)
timed() {
  local dir=$1; shift
  mkdir -p "$dir"
  local start rc=0
  start=$(date +%s)
  "$@" || rc=$?
  printf '{"started": "%s", "seconds": %d, "rc": %d, "nproc": %d, "device": "%s", "command": "%s"}\n' \
    "$(date -u -d "@$start" +%FT%TZ)" "$(( $(date +%s) - start ))" "$rc" "$NPROC" "$DEVICE" "$*" >> "$dir/walltime.jsonl"
  return "$rc"
}

bench() {  # bench PROTOCOL PRIOR IDS DIR TASKS METHODS
  local launch=("$BIN/reguidance")
  if (( NPROC > 1 )); then launch=("$BIN/torchrun" --standalone --nproc_per_node "$NPROC" "$BIN/reguidance"); fi
  timed "$4" "${launch[@]}" bench --protocol "$1" --prior "$2" --ids "$3" --out "$4" --tasks "$5" --methods "$6" \
    --ablations --dtype fp32 --batch-size 16 --device "$DEVICE" $EXTRA
}

report() {  # report TABLE LABEL: one markdown report over the table's priors
  local into="$OUT/$1/REPORT.md" runs=()
  [[ -f "$into" ]] || printf '# %s\n\n<!-- tables:begin -->\n<!-- tables:end -->\n' "$2" > "$into"
  for prior in $PRIORS; do
    if [[ -f "$OUT/$1/$prior/summary.json" ]]; then runs+=(--run "$prior-$1=$OUT/$1/$prior"); fi
  done
  if (( ${#runs[@]} )); then
    "$BIN/reguidance" bench-report "${runs[@]}" --into "$into" --pictures "$OUT/$1"
  fi
}

case "$TABLE" in
  reference|cpu)
    for prior in $PRIORS; do
      ids=$IDS
      if [[ $prior == fashion_mnist ]]; then ids=$FASHION_IDS; fi
      dir="$OUT/$TABLE/$prior"
      bench "$TABLE" "$prior" "$ids" "$dir" "$TASKS" "$METHODS"
      if [[ -n $NONLINEAR_METHODS ]]; then  # NONLINEAR_METHODS= (empty) skips satblur
        bench "$TABLE" "$prior" "$ids" "$dir" satblur "$NONLINEAR_METHODS"  # same folder: adding a task resumes
      fi
    done
    if [[ $TABLE == reference ]]; then
      report reference "Primary table: every candidate at its reference budget"
    else
      report cpu "Second table: starved candidates (CPU protocol budgets)"
    fi
    ;;
  tune)
    timed "$OUT/tune" env OUT="$OUT/tune" BIN="$BIN" scripts/tune.sh
    ;;
  equal)
    EQUAL_TASKS=${EQUAL_TASKS:-box20,sr4,sr8,deblur,satblur}
    EQUAL_METHODS=${EQUAL_METHODS:-dps,daps}
    TUNE_IDS=${TUNE_IDS:-0:16}
    for prior in $PRIORS; do
      ids=$IDS
      if [[ $prior == fashion_mnist ]]; then ids=$FASHION_IDS; fi
      sweeps="$OUT/equal/tune-$prior" table="$OUT/equal/tuned_$prior.json"
      for method in ${EQUAL_METHODS//,/ }; do  # one process per method, each in its own folder (one writer each)
        mkdir -p "$sweeps"
        timed "$sweeps" "$BIN/reguidance" tune-defaults --prior "$prior" --protocol cpu --ids "$TUNE_IDS" --ablations \
          --dtype fp32 --batch-size 16 --device "$DEVICE" --tasks "$EQUAL_TASKS" --methods "$method" \
          --out "$sweeps/$method" > "$sweeps/$method.log" 2>&1 &
      done
      wait
      from=()  # the table from every method's folder (their pairs read there, nothing recomputed)
      for method in ${EQUAL_METHODS//,/ }; do from+=(--from "$sweeps/$method"); done
      "$BIN/reguidance" tune-defaults --prior "$prior" --protocol cpu --ids "$TUNE_IDS" --ablations --dtype fp32 \
        --batch-size 16 --tasks "$EQUAL_TASKS" --methods "$EQUAL_METHODS" --out "$sweeps/all" "${from[@]}" \
        --write "$table"
      EXTRA="--tuned $table $EXTRA" bench cpu "$prior" "$ids" "$OUT/equal/$prior" "$EQUAL_TASKS" "$EQUAL_METHODS"
    done
    report equal "Equal tuning: every variant tuned alike (CPU protocol budgets)"
    ;;
  *)
    echo "usage: scripts/study.sh reference|cpu|tune|equal" >&2
    exit 2
    ;;
esac
