#!/usr/bin/env bash
# GPU check. Usage: scripts/gpu_check.sh [--device cuda|cpu]   (default cuda)
#
# --device cuda (a lent GPU; the speed runs time three interleaved repeats each, several minutes on one H100/H200):
# the card (nvidia-smi), the device tests (tests/test_cuda.py with REGUIDANCE_TEST_DEVICE=cuda, and tests/test_adm.py),
# then `reguidance speed` for the ffhq_10m configuration (random weights, same cost as the real checkpoint) at batch 1
# and 8, fp32 and bf16, bf16 + torch.compile at batch 8, and bf16 + CUDA graphs (compile mode reduce-overhead) at
# batch 1. Reports land in ${OUT:-runs/gpu}.
#
# --device cpu (part of `make test`, about a minute of CPU time): every step above on CPU with tiny budgets, so the
# script itself is known to run before a GPU is lent. No nvidia-smi; the device tests with REGUIDANCE_TEST_DEVICE=cpu
# (test_adm.py is left to `make test`); the speed runs on the 8x8 RGB UNet of ffhq_10m's kind that tests/test_cuda.py
# uses (random weights) at batch 1 and 2, one step of each method, two repeats; the compile steps with
# TORCH_COMPILE_DISABLE=1 (inductor needs minutes for a UNet on 2 cores: they check the flags' path, not the
# compiler). Reports land in ${OUT:-a temporary folder, removed when every step passed}.
#
# Every step's output is kept in its own file; the first step that fails stops the check with its exit status.
# Python: ${PYTHON:-python3} with this checkout's src first on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --device=*) device="${1#--device=}"; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'; usage: scripts/gpu_check.sh [--device cuda|cpu]" >&2; exit 2 ;;
  esac
done
case "$device" in
  cuda | cpu) ;;
  *) echo "gpu_check.sh: --device must be cuda or cpu, got '$device'" >&2; exit 2 ;;
esac

py="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 REGUIDANCE_TEST_DEVICE="$device"
if [ -n "${OUT:-}" ]; then
  out="$OUT"
elif [ "$device" = cuda ]; then
  out=runs/gpu
else
  out="$(mktemp -d "${TMPDIR:-/tmp}/reguidance-gpu-check.XXXXXX")"
  trap 'rc=$?; if [ "$rc" -eq 0 ]; then rm -rf "$out"; else echo "gpu_check: reports kept in $out" >&2; fi' EXIT
fi
mkdir -p "$out"

# step NAME COMMAND...: run COMMAND, its output to the terminal and to $out/NAME.txt; stop the check if it fails.
step() {
  local name="$1" start=$SECONDS rc=0
  shift
  echo "== $name"
  "$@" 2>&1 | tee "$out/$name.txt" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "gpu_check: step '$name' failed (exit $rc): $*" >&2
    exit "$rc"
  fi
  echo "== $name: ok, $((SECONDS - start)) s"
}

if [ "$device" = cuda ]; then
  step gpu nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
# torch and the device as python sees them; on cpu also the CPU and the tiny prior the speed runs time
step setup "$py" - "$device" "$out" <<'PY'
import json, sys
from pathlib import Path

import torch

from reguidance.studies.speed import cpu_facts

device, out = sys.argv[1], Path(sys.argv[2])
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}: {gpu}; CPU {cpu_facts()[0]}")
if device == "cpu":
    sys.path.insert(0, "tests")
    from test_cuda import TINY_CONFIG, tiny_prior

    prior = tiny_prior(torch.device("cpu"))
    torch.save(prior.unet.state_dict(), out / "tiny.pt")
    (out / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    print(f"tiny prior: {sum(p.numel() for p in prior.parameters())} parameters, {out / 'tiny.pt'}")
PY
if [ "$device" = cuda ]; then
  # tests/test_adm.py checks the UNet against the authors' code under this machine's torch
  step tests "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_adm.py
  prior=(--prior ffhq_10m)
  budget=(--dps-steps 100 --inversion-steps 20 --daps-annealing-steps 4)
  small=1 large=8
  compile_env=()
else
  # tests/test_adm.py is device-free and already run by `make test` under the same torch
  step tests "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
  prior=(--prior "$out/tiny.pt" --prior-config "$out/tiny.json")
  budget=(--dps-steps 1 --inversion-steps 1 --daps-annealing-steps 1 --repeats 2)
  small=1 large=2
  compile_env=(env TORCH_COMPILE_DISABLE=1)
fi

speed() {  # speed NAME OPTIONS...: `reguidance speed` on $device with this device's prior and budget
  local name="$1"
  shift
  step "$name" ${compile_env[@]+"${compile_env[@]}"} "$py" -m reguidance speed "${prior[@]}" --device "$device" "${budget[@]}" "$@" \
    --json "$out/$name.json"
}
for b in "$small" "$large"; do
  for d in fp32 bf16; do
    speed "speed_b${b}_${d}" --dtype "$d" --batch-size "$b"
  done
done
speed "speed_b${large}_bf16_compile" --dtype bf16 --batch-size "$large" --compile
# CUDA graphs (torch.compile mode reduce-overhead) at batch 1, where launch overhead matters most; last, so a failure
# here leaves the figures above intact.
speed "speed_b${small}_bf16_graphs" --dtype bf16 --batch-size "$small" --compile --compile-mode reduce-overhead
echo "gpu_check ($device): every step passed; reports in $out"
