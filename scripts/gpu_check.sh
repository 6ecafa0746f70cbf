#!/usr/bin/env bash
# GPU check (about 5 minutes on one H100): the CUDA tests, then `reguidance speed` for the ffhq_10m configuration
# (random weights, same cost as the real checkpoint) at batch 1 and 8, fp32 and bf16, and bf16 + torch.compile at
# batch 8. Uses the machine's own python3 with src on PYTHONPATH. Reports land in ${OUT:-runs/gpu}.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-runs/gpu}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_adm.py 2>&1 | tail -5 | tee "$out/tests.txt"
steps="--dps-steps 100 --inversion-steps 20 --daps-annealing-steps 4"
for b in 1 8; do
  for d in fp32 bf16; do
    python3 -m reguidance speed --prior ffhq_10m --device cuda --dtype "$d" --batch-size "$b" $steps \
      --json "$out/speed_b${b}_${d}.json" | tee "$out/speed_b${b}_${d}.txt"
  done
done
python3 -m reguidance speed --prior ffhq_10m --device cuda --dtype bf16 --batch-size 8 --compile $steps \
  --json "$out/speed_b8_bf16_compile.json" | tee "$out/speed_b8_bf16_compile.txt"
# CUDA graphs (torch.compile mode reduce-overhead) at batch 1, where launch overhead matters most; last, so a failure
# here leaves the figures above intact.
python3 -m reguidance speed --prior ffhq_10m --device cuda --dtype bf16 --batch-size 1 --compile \
  --compile-mode reduce-overhead $steps --json "$out/speed_b1_bf16_graphs.json" | tee "$out/speed_b1_bf16_graphs.txt"
