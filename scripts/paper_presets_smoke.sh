#!/usr/bin/env bash
# Real-scale smoke test: the paper's 256x256 presets end to end through `reguidance restore` and
# `reguidance bench --data folder:...` with a random-weight stand-in of the exact ffhq_10m architecture (no
# checkpoint can be downloaded here; the cost per network evaluation is the real one). Tiny step counts: 1 inversion
# + 1 DPS step on top of the pseudo-inverse, one 300x400 photo (centre-cropped and resized to 256x256).
# Usage: scripts/paper_presets_smoke.sh [work folder] (default: a temporary one, removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
work="${1:-$(mktemp -d)}"
[ -n "${1:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/checkpoints" "$work/faces"
start=$SECONDS
"$PY" - "$work" <<'PYEOF'
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reguidance.priors import random_prior

work = Path(sys.argv[1])
torch.save(random_prior("ffhq_10m").unet.state_dict(), work / "checkpoints" / "ffhq_10m.pt")
pixels = np.random.default_rng(0).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
Image.fromarray(pixels).save(work / "faces" / "face.jpg")
PYEOF
export REGUIDANCE_CHECKPOINTS="$work/checkpoints"
echo "stand-in checkpoint and photo: $((SECONDS - start)) s"
presets="paper:box128c paper:box128 paper:sr8 paper:sr16 paper:gauss paper:motion"
for task in $presets; do
  t0=$SECONDS
  "$PY" -m reguidance restore --prior ffhq_10m --task "$task" --image "$work/faces" --resize --method pinv \
    --inversion-steps 1 --dps-steps 1 --batch-size 1 --out "$work/restore_${task#paper:}"
  echo "restore $task: $((SECONDS - t0)) s"
done
t0=$SECONDS
"$PY" -m reguidance bench --prior ffhq_10m --data "folder:$work/faces" --tasks "${presets// /,}" --methods pinv \
  --inversion-steps 1 --dps-steps 1 --ids 0:1 --batch-size 1 --out "$work/bench"
echo "bench (6 presets): $((SECONDS - t0)) s"
echo "total: $((SECONDS - start)) s"
