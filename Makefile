# blockfeed developer entry points. Everything installs into .venv; nothing global but the
# Debian packages the tests use (scripts/system-deps.sh).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/blockfeed demo

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The shortened soak (3,000 blocks, ~1 min), then the full one (200,000 blocks, 2,000 faults of
# every class; ~35 min at 100 blocks/s). Figures in bench/results/soak.json.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow --run-slow tests/chaos
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build dist *.egg-info
