# Set-up is part of every target: the virtual environment lives at .venv and is (re)built when
# pyproject.toml changes. Torch comes from the machine's local wheels (see README).
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTHON ?= python3

.PHONY: setup run test lint typecheck unit slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/nf-dist quickstart

lint: setup
	$(BIN)/ruff check nf_dist tests benchmarks jobs
	$(BIN)/ruff format --check nf_dist tests benchmarks jobs

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -m "not slow" -q

test: lint typecheck unit

slow: setup
	$(BIN)/python -m pytest -m slow -q

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
