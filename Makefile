# The README's quick start: `make demo` and `make test`, each from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The CPU build of PyTorch (a plain `torch` from PyPI is the multi-GB CUDA build).
TORCH  ?= torch==2.13.0

.PHONY: demo test install install-test bench fixture clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/completer demo

test: install-test
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/keystroke_latency.py

# Regenerate the tiny test fixture model (committed; only needed when its recipe changes).
fixture: install
	$(BIN)/python -m engine_builds.make_fixture

clean:
	rm -rf $(VENV) .pytest_cache
