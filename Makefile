# Two commands matter: `make demo` and `make test`. Each builds .venv from nothing when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned: 2.13.0 is the CPU wheel that installs from local disk here; an unpinned torch pulls CUDA.
TORCH := torch==2.13.0

.PHONY: setup demo test test-slow lint theory clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reguidance theory --json runs/theory/report.json

theory: $(STAMP)
	$(VENV)/bin/reguidance theory

test: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
