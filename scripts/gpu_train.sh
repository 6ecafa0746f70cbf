#!/usr/bin/env bash
# Train the priors on a lent GPU for a fixed time, then score them. Usage:
#   scripts/gpu_train.sh [--device cuda|cpu] [--minutes M]        (defaults: cuda, 4 minutes per prior)
#
# --device cuda: the colour prior `emoji` trained from scratch (flips, dropout 0.1), and the MNIST and Fashion-MNIST
# priors fine-tuned from the embedded ones (--init), each for M minutes at batch 128, then 2000 samples of each scored
# with `reguidance sample` (FD-cls beside its real-data floor, the memorisation figure). Everything lands in
# ${OUT:-runs/gpu-train}/<name>/: the weights, model.json (the folder is a prior: --prior runs/gpu-train/<name>), the
# model card README.md with the hardware and the time spent and the sample grid; its scores in ${OUT}/eval/<name>/.
# The data must be on disk (`make data`; a lent GPU machine has no network: carry the data root, see
# ${REGUIDANCE_DATA}); a prior whose training split is missing is skipped in cpu mode and fails in cuda mode.
#
# --device cpu: the same steps with tiny budgets (2 steps at batch 4, 16 samples of 5 steps), so the script is known
# to run before a GPU is lent; part of `make test` (the gpu-check-cpu target). Reports in ${OUT:-a temporary folder}.
#
# Python: ${PYTHON:-python3} with this checkout's src first on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
minutes=4
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --minutes) minutes="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    *) echo "gpu_train.sh: unknown argument '$1'; usage: scripts/gpu_train.sh [--device cuda|cpu] [--minutes M]" >&2
       exit 2 ;;
  esac
done
case "$device" in
  cuda | cpu) ;;
  *) echo "gpu_train.sh: --device must be cuda or cpu, got '$device'" >&2; exit 2 ;;
esac
case "$minutes" in
  '' | *[!0-9.]* | .* | *.*.*) echo "gpu_train.sh: --minutes must be a positive number, got '$minutes'" >&2; exit 2 ;;
esac

py="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${OUT:-}" ]; then
  out="$OUT"
elif [ "$device" = cuda ]; then
  out=runs/gpu-train
else
  out="$(mktemp -d "${TMPDIR:-/tmp}/reguidance-gpu-train.XXXXXX")"
  trap 'rc=$?; if [ "$rc" -eq 0 ]; then rm -rf "$out"; else echo "gpu_train: kept $out" >&2; fi' EXIT
fi
mkdir -p "$out"

if [ "$device" = cuda ]; then
  budget=(--steps 100000000 --minutes "$minutes" --batch-size 128 --lr 2e-4 --sample-every 2000)
  scoring=(--n 2000 --steps 50 --batch-size 500)
  nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
else
  budget=(--steps 2 --batch-size 4)
  scoring=(--n 16 --steps 5 --batch-size 16)
fi

for name in emoji mnist fashion_mnist; do
  if ! "$py" -c "import sys; from reguidance.io.datasets import is_available; sys.exit(0 if is_available('$name') else 1)"; then
    if [ "$device" = cpu ]; then echo "== $name: skipped (its training split is not on disk: make data)"; continue; fi
    echo "gpu_train: the $name training split is not on disk (make data, or carry the data root)" >&2; exit 1
  fi
  case "$name" in
    emoji) extra=(--hflip --dropout 0.1) ;;
    *) extra=(--init "$name") ;;
  esac
  start=$SECONDS
  echo "== train $name"
  "$py" -m reguidance train --data "$name" --out "$out/$name" --device "$device" "${budget[@]}" "${extra[@]}"
  echo "== score $name"
  "$py" -m reguidance sample --prior "$out/$name" --dataset "$name" --device "$device" "${scoring[@]}" \
    --out "$out/eval/$name" --json "$out/eval/$name.json"
  echo "== $name: ok, $((SECONDS - start)) s"
done
echo "gpu_train: everything in $out"
