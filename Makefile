# Set-up is part of every target: the virtual environment lives at .venv and is (re)built when
# pyproject.toml or requirements.lock changes, from the pinned versions of requirements.lock.
# Torch comes from the machine's local wheels (see README).
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTHON ?= python3
LOCK   := requirements.lock

.PHONY: setup run test lint typecheck lockcheck unit slow lock device-check clean

# uv installs the same pinned lock in parallel (benchmarks/quickstart/results/quickstart.md: 86 s cold with
# bytecode, against pip's 4 min 11 s on a 2-core machine); pip stays the fallback where uv is not served. Bytecode is
# compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set, every process (each Ray
# worker) would otherwise compile torch and Ray from source at import, and the suite ran 25% slower.
UV_VERSION := 0.13.8
UV     := $(BIN)/uv
export UV_LINK_MODE := copy

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if $(BIN)/pip install --quiet uv==$(UV_VERSION); then \
	  $(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r $(LOCK) && \
	  $(UV) pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -e . ; \
	else \
	  $(BIN)/pip install --quiet -c $(LOCK) torch==2.14.1 torchvision==0.29.1 && \
	  $(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]' ; \
	fi
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/nf-dist quickstart

lint: setup
	$(BIN)/ruff check nf_dist tests benchmarks jobs scripts
	$(BIN)/ruff format --check nf_dist tests benchmarks jobs scripts

typecheck: setup
	$(BIN)/mypy

lockcheck: setup
	$(BIN)/python scripts/check_lock.py pyproject.toml $(LOCK)

unit: setup
	$(BIN)/python -m pytest -m "not slow" -q --durations=25

test: lint typecheck lockcheck unit

slow: setup
	$(BIN)/python -m pytest -m slow -q

# The GPU path, measured on a lent device (benchmarks/device_check/run.py; --smoke on a CPU).
device-check: setup
	$(BIN)/python -m benchmarks.device_check.run

# Refresh the lock: a fresh environment from pyproject.toml alone, frozen.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	.venv-lock/bin/pip install --quiet -e '.[dev]'
	{ head -n 3 $(LOCK); .venv-lock/bin/pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
