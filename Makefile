# Two entry points on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv, install the CPU build of torch 2.13.0 first (an open range would pull a
# multi-GB CUDA build), then this package with its dev extras.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED := ../shared/data
DEMO_OUT := out

.PHONY: setup demo lint test test-all bench clean

$(BIN)/matanyone: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/matanyone

# Matte the MatAnyone sample clip (or a generated clip when ../shared is absent) with the seeded
# random weights: no network access is needed, and the mattes are NOT meaningful (random weights).
demo: setup
	$(BIN)/matanyone demo -o $(DEMO_OUT)

# Lint, format and type checks (ruff, mypy; configured in pyproject.toml): `make test` runs them first.
LINTED := core backends exporters tests benchmarks docs examples
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# Lint and types, the project's suite, then the OpenVINO example plugin installed the way a
# stranger would (non-editable) and its own tests.
test: setup lint
	$(BIN)/python -m pytest -q -m "not slow"
	$(BIN)/pip install -q ./examples/matanyone-openvino
	$(BIN)/python -m pytest -q examples/matanyone-openvino/tests

test-all: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/run_table.py --update-readme

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
