# charpoet: two commands do all the set-up.
#   make demo   creates .venv, installs charpoet, fetches the built-in Shakespeare corpus,
#               trains a model sized to 3 minutes of this CPU (samples every minute) and
#               generates from it, verbatim copies of Shakespeare highlighted
#   make test   creates/updates .venv with the dev extras and runs the whole test suite

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= runs/demo
DEMO_MINUTES ?= 3

.PHONY: demo test install dev browser web-runtime bench-speed bench-quality bench-clean clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m charpoet.stepper  # compile the generation kernels for this CPU once
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m charpoet.stepper  # compile the generation kernels for this CPU once
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed web-runtime

dev: $(VENV)/.installed-dev web-runtime

# onnxruntime-web for `charpoet export --format web`, pinned by web/package-lock.json (npm ci never
# changes the lock); without npm the site export says how to get it, everything else works.
WEB_RUNTIME := web/node_modules/.package-lock.json

web-runtime: $(WEB_RUNTIME)

$(WEB_RUNTIME): web/package.json web/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "npm not found: charpoet export --format web needs onnxruntime-web (npm ci --prefix web)"; \
	elif npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error; then \
		touch $@; \
	else \
		echo "npm ci --prefix web failed: charpoet export --format web will say so; everything else works"; \
	fi

demo: install
	@echo "== training on the built-in Shakespeare corpus for $(DEMO_MINUTES) minutes (fresh run in $(DEMO)) =="
	rm -rf $(DEMO)
	$(BIN)/charpoet train --checkpoint-path $(DEMO) --max-minutes $(DEMO_MINUTES) \
		--stats-every 1m --snapshot-every 1m --sample-every 1m --sample-below-loss 2.5 \
		--sample-temperatures 0.5,0.8 --sample-length 300
	@echo "== generating from $(DEMO) =="
	$(BIN)/charpoet generate --checkpoint-path $(DEMO) --prime "ROMEO." --length 600 --temperature 0.5 \
		--min-quote 12 --seed 1

test: dev browser
	$(BIN)/python -m pytest

# The browser tests (tests/test_serve_browser.py) drive Debian's Chromium through Playwright (from
# the dev extras); Playwright's own browser downloads are never used. As root, a missing Chromium is
# installed quietly; if that fails (no root, no network) the browser tests skip, saying why.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "== installing Debian's chromium for the browser tests =="; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
			|| echo "chromium could not be installed; the browser tests will be skipped"; \
	fi

bench-speed: install
	$(BIN)/python benchmarks/train_shakespeare.py speed

bench-quality: install
	$(BIN)/python benchmarks/train_shakespeare.py quality --with-plain

# c-w/gutenberg's strip_headers (as shipped in gutenbergpy) for comparison; textget needs only
# future and chardet, so gutenbergpy's catalogue dependencies (lxml, pymongo) are skipped.
bench-clean: install
	$(BIN)/python -m pip install --quiet --no-deps gutenbergpy==0.3.5 future==1.0.0 chardet==7.7.0
	$(BIN)/python benchmarks/gutenberg_clean.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache web/node_modules
