# blockfeed developer entry points. Everything installs into .venv; nothing global but the
# Debian packages the tests use (scripts/system-deps.sh).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test lint docs bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

# The demo needs only blockfeed itself, not the test, lint or docs extras.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(DEMO_STAMP)

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/blockfeed demo

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The docs site in site/ (site/index.html); any warning (a broken link, a missing docstring
# target) fails the build.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The shortened soak (3,000 blocks, ~1 min), then the full one (200,000 blocks, 2,000 faults of
# every class; ~35 min at 100 blocks/s). Figures in bench/results/soak.json.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow --run-slow tests/chaos
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build dist site *.egg-info
