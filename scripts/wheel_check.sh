#!/usr/bin/env bash
# The wheel as a user gets it. Usage: scripts/wheel_check.sh   (PYTHON: a python with `build`, default .venv's)
#
# Builds a wheel (python -m build) from a copy of the working tree's files (tracked and untracked, not ignored: no
# stale build/ of an earlier run can slip into it), installs it into .venv-wheel (created when absent with its own
# pinned torch==2.13.0; the wheel's dependencies come from the wheel's own metadata; the package itself is reinstalled
# from the new wheel on every run), then, from a folder outside the checkout, runs `reguidance demo --help`,
# `reguidance models` and a tiny `restore` on the embedded mnist prior, and checks that the reguidance that ran is the
# installed one and that the embedded assets came with it. The folders it works in are removed when it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
python="${PYTHON:-$root/.venv/bin/python}"
venv="$root/.venv-wheel"
work="$(mktemp -d)"
trap 'echo "wheel_check.sh: failed; its files are in $work" >&2' ERR

mkdir "$work/tree"
git ls-files -co --exclude-standard -z | tar --null -cf - -T - | tar -xf - -C "$work/tree"
if ! "$python" -m build --wheel --outdir "$work/dist" "$work/tree" >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  exit 1
fi
wheel="$(ls "$work"/dist/reguidance-*.whl)"
echo "built $(basename "$wheel")"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q torch==2.13.0
fi
"$venv/bin/python" -m pip install -q torch==2.13.0 "$wheel"           # its dependencies, from its metadata
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel"  # this build, not an earlier one
"$venv/bin/python" -m pip check

mkdir "$work/run" && cd "$work/run"  # outside the checkout: nothing of src/ is on the path
"$venv/bin/python" - "$venv" <<'PY'
import sys
from pathlib import Path

import reguidance
from reguidance.conventions import ASSETS_DIR

venv = Path(sys.argv[1]).resolve()
where = Path(reguidance.__file__).resolve()
assert venv in where.parents, f"reguidance was imported from {where}, not from the wheel installed in {venv}"
assets = sorted(p.relative_to(ASSETS_DIR).as_posix() for p in ASSETS_DIR.rglob("*") if p.is_file())
assert any(a.startswith("models/") for a in assets) and any(a.startswith("data/") for a in assets), assets
print(f"reguidance {where.parent} with {len(assets)} embedded asset files")
PY
"$venv/bin/reguidance" demo --help >/dev/null
"$venv/bin/reguidance" models >models.txt
grep "^mnist " models.txt  # the embedded prior, listed as present
"$venv/bin/python" -c "
from PIL import Image
Image.linear_gradient('L').resize((32, 32)).save('digit.png')"
"$venv/bin/reguidance" restore --task sr4 --method pinv --image digit.png --inversion-steps 2 --dps-steps 2 \
  --threads 1 --out restored >restore.log 2>&1 || { cat restore.log >&2; exit 1; }
test -s restored/restored/digit.png
echo "wheel check passed: demo --help, models and restore ran from the installed wheel"
cd "$root" && rm -rf "$work"
