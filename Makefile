# Two commands matter: `make demo` and `make test`. Each builds .venv from nothing when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned: 2.13.0 is the CPU wheel that installs from local disk here; an unpinned torch pulls CUDA.
TORCH := torch==2.13.0

.PHONY: setup data demo test test-fast test-scalar test-deepinv test-wheel gpu-check-cpu lint theory tune benchmark study-reference study-cpu study-equal clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Full MNIST / Fashion-MNIST, only needed for training and the full benchmark (tests use committed subsets).
data: $(STAMP)
	command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ] && \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || true
	$(PY) -c "from reguidance.io.datasets import DATASETS, load_dataset as L; [L(n, s) for n in DATASETS for s in ('train', 'val', 'test')]"
	$(PY) -c "from reguidance.io.emoji import load_emoji; load_emoji('all', name='emoji_google')"

demo: $(STAMP)
	$(VENV)/bin/reguidance demo

# The validation sweeps behind the CPU protocol's tuned tables, one per prior, every variant tuned alike (candidate,
# ReGuidance, renoise, fresh, more; 12 settings per grid, 16 validation images): about 5 h per prior on one core,
# both priors side by side. Resumable. Needs `make data`.
tune: data
	mkdir -p runs
	scripts/tune.sh

# The study's tables (scripts/study.sh: sharded with torchrun, resumable, wall time into each run folder).
# study-reference: the PRIMARY table, every candidate at its reference budget (~16 h on 2 cores; see the script);
# study-cpu: the second table, starved candidates under the CPU protocol (~1.5 h).
study-reference: data
	scripts/study.sh reference

study-cpu: data
	scripts/study.sh cpu

# study-equal: the equal-tuning table, every variant tuned alike on 16 validation images, then the CPU protocol's
# benchmark with that table on the headline tasks (DPS, DAPS; ~1.5 h per prior on 2 cores).
study-equal: data
	scripts/study.sh equal

# BENCHMARK.md: both priors, 5 hard tasks, every method, 50 test images, ablations on MNIST (about 1 h on 2 cores).
benchmark: $(STAMP)
	scripts/benchmark.sh

theory: $(STAMP)
	$(VENV)/bin/reguidance theory

# The whole check: lint (ruff and the mypy type check), the test suite, the GPU check's script on CPU, then the wheel.
test: lint
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory gpu-check-cpu
	$(MAKE) --no-print-directory test-wheel

# scripts/wheel_check.sh: build the wheel (python -m build), install it into .venv-wheel (its own torch==2.13.0, kept
# between runs; the package reinstalled from each new wheel), and run `reguidance demo --help`, `reguidance models`
# and a tiny `restore` from a folder outside the checkout (about 30 s once .venv-wheel exists).
test-wheel: $(STAMP)
	PYTHON="$(abspath $(PY))" bash scripts/wheel_check.sh

# scripts/gpu_check.sh --device cpu: every step of the GPU check on CPU with tiny budgets, so the script is known to
# run before a GPU is lent (about a minute of CPU time; reports in a temporary folder, kept only if a step fails).
gpu-check-cpu: $(STAMP)
	PYTHON="$(abspath $(PY))" bash scripts/gpu_check.sh --device cpu
	PYTHON="$(abspath $(PY))" bash scripts/gpu_train.sh --device cpu

# The fast tier: lint, then every test not marked slow (a few minutes on 2 cores); `make test` stays the whole check.
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

# The numerical tests again on torch's scalar CPU kernels (no AVX2/AVX-512), which round differently: tolerances
# must not depend on the vector kernels of the machine that wrote them. Run by CI after `make test`.
NUMERIC_TESTS := tests/test_baselines.py tests/test_dps.py tests/test_wrapper.py tests/test_operators.py \
	tests/test_diffusion.py tests/test_inversion.py tests/test_gmm.py tests/test_adm.py
test-scalar: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(PY) -c "import torch; assert torch.backends.cpu.get_cpu_capability() == 'DEFAULT'"
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q $(NUMERIC_TESTS)

# The deepinv tier: tests/deepinv_tier/ against the real deepinv 0.5.0 (the adapter, the docs' deepinv examples, the
# side-by-side DPS script), in a second environment: deepinv imports torchvision, which does not import beside the
# pinned torch 2.13. .venv-deepinv is built from nothing when absent or older than pyproject.toml (torch 2.14.1 and
# torchvision 0.29.1 from this machine's disk: a CUDA build that runs on the CPU, about 2 minutes and 5.5 GB), then
# deepinv, then the project's dependencies and test tools, then the project itself without dependencies (pip must not
# touch that torch). `make test` leaves tests/deepinv_tier/ out (tests/conftest.py collects it only where deepinv
# imports).
DEEPINV_VENV := .venv-deepinv
DEEPINV_PY := $(DEEPINV_VENV)/bin/python
DEEPINV_STAMP := $(DEEPINV_VENV)/.installed
DEEPINV_PINS := torch==2.14.1 torchvision==0.29.1
DEEPINV := deepinv==0.5.0
# the project's own dependencies, read from pyproject.toml (tomllib: Python >= 3.11)
REQUIREMENTS := "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))"

$(DEEPINV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEEPINV_VENV)
	$(DEEPINV_PY) -m pip install -q --upgrade pip
	$(DEEPINV_PY) -m pip install -q $(DEEPINV_PINS)
	$(DEEPINV_PY) -m pip install -q $(DEEPINV_PINS) $(DEEPINV)
	$(DEEPINV_PY) -m pip install -q $(DEEPINV_PINS) $$($(DEEPINV_PY) -c $(REQUIREMENTS)) pytest scipy
	$(DEEPINV_PY) -m pip install -q --no-deps -e .
	touch $(DEEPINV_STAMP)

test-deepinv: $(DEEPINV_STAMP)
	$(DEEPINV_PY) -m pytest -q -p no:cacheprovider tests/deepinv_tier

lint: $(STAMP)
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts
	$(PY) -m mypy

clean:
	rm -rf $(VENV) $(DEEPINV_VENV) .venv-wheel .pytest_cache .ruff_cache .mypy_cache
