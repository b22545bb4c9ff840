# seqvae: `make run` starts the dashboard, `make test` runs every test; both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.10 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pyproject.sha256
ADDRESS ?= 127.0.0.1
PORT ?= 8501

.PHONY: help setup run test lint typecheck bench browser sample clean

help:
	@echo "make run    - set up (first time) and start the dashboard on http://$(ADDRESS):$(PORT)"
	@echo "make test   - set up (first time) and run lint, unit, app and browser tests"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - run the benchmarks and write their tables under benchmarks/ and docs/"

# Create .venv when missing; (re)install only when pyproject.toml changed (by content).
# --no-compile: Python compiles the modules it imports on first use; compiling every file of
# TensorFlow & co. up front took 99 s of a 2-core install against 53 s without.
setup:
	@set -e; \
	if [ ! -x "$(PY)" ]; then \
	  echo "creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv "$(VENV)"; fi; \
	want=$$(sha256sum pyproject.toml | cut -d' ' -f1); \
	if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$want" ]; then \
	  echo "installing seqvae and its dependencies into $(VENV) (first time: a few minutes)"; \
	  "$(PY)" -m pip install --quiet --disable-pip-version-check --no-compile -e '.[test]'; \
	  echo "$$want" > "$(STAMP)"; fi

# Debian's chromium for the browser tests (Playwright's own browser download is not used).
browser:
	@if [ -z "$$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser tests will say so"; \
	  else echo "no chromium and no way to install it: the browser tests will say so"; fi; fi

run: setup
	"$(VENV)/bin/streamlit" run app.py --server.address "$(ADDRESS)" --server.port "$(PORT)" \
	  --browser.gatherUsageStats false

test: setup browser lint
	"$(PY)" -m pytest

lint: setup
	"$(VENV)/bin/ruff" check .
	"$(VENV)/bin/mypy" seqvae

bench: setup
	"$(PY)" benchmarks/ingest.py
	"$(PY)" benchmarks/train_speed.py
	"$(PY)" benchmarks/dashboard.py
	"$(PY)" benchmarks/latent.py
	"$(PY)" benchmarks/segments.py
	"$(PY)" benchmarks/segments.py --sample-seed 11 --name segments-sample-11
	"$(PY)" benchmarks/load.py
	"$(PY)" benchmarks/quality.py
	"$(PY)" benchmarks/seeds.py
	"$(PY)" benchmarks/scale.py

sample: setup
	"$(VENV)/bin/seqvae" sample --out sample_data/events.csv

clean:
	rm -rf "$(VENV)" .pytest_cache .ruff_cache .mypy_cache .hypothesis tests/artifacts
