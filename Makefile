# wahook — every target installs what it needs, idempotently, on a fresh clone.
#   make run     the sidecar in dev mode (SQLite, generated secret + certificate)
#   make test    the Python test suite (CI runs it, then make clients-test)
#   make check   ruff, ruff format --check, mypy --strict, buf lint, buf format
#   make proto   regenerate every generated file from proto/
#   make proto-baseline  record proto/ as the published API (buf breaking's reference)
#   make bench   the benchmarks (not part of test)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
BUF := tools/node_modules/.bin/buf
BUF_STAMP := tools/node_modules/.installed
PROTOS := $(sort $(wildcard proto/wahook/v1/*.proto))
PY_GEN := server/wahook/v1
PY_GEN_STAMP := $(PY_GEN)/.generated

.PHONY: help venv tools proto proto-baseline test test-py redis-server check lint typecheck buflint run bench clean clients-test

help:
	@sed -n '2,8p' Makefile

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV_STAMP)

$(BUF_STAMP): tools/package.json
	cd tools && npm install --no-audit --no-fund --loglevel=error
	touch $@

tools: $(BUF_STAMP)

# Python code is generated at build time (never committed): message classes,
# gRPC stubs, and .pyi stubs for mypy.
$(PY_GEN_STAMP): $(PROTOS) $(VENV_STAMP)
	rm -rf $(PY_GEN)
	mkdir -p $(PY_GEN)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -I proto \
	  --python_out=server --grpc_python_out=server \
	  --mypy_out=quiet:server --mypy_grpc_out=quiet:server $(PROTOS)
	printf '"""Generated from proto/wahook/v1 by `make proto`. Do not edit."""\n' > $(PY_GEN)/__init__.py
	touch $@

# Always regenerates, whatever the timestamps say.
proto: $(VENV_STAMP)
	rm -f $(PY_GEN_STAMP)
	$(MAKE) --no-print-directory $(PY_GEN_STAMP) proto-clients

# Unit, contract, end-to-end and bench smoke tests; the other languages' clients run
# in `make clients-test` (clients/clients.mk), which .ci/run calls after this. Then the
# coverage gate: each package's branch coverage at least its floor in pyproject.toml
# ([tool.wahook.coverage-floors]; wahook.core's is 100%).
test: $(PY_GEN_STAMP) redis-server
	$(BIN)/pytest -m "not clients" --cov --cov-report=term-missing:skip-covered \
	  --cov-report=json:coverage.json tests
	$(PY) tests/coverage_floors.py coverage.json

# The Redis Streams event log's tests run a real redis-server (Debian's package); they
# fail, never skip, without one. apt-get update only when the package lists lack it.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
redis-server:
	@command -v redis-server >/dev/null || { \
	  $(SUDO) apt-get install -y -q redis-server >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server; }; }

check: lint typecheck buflint

lint: $(VENV_STAMP)
	$(BIN)/ruff check server tests bench
	$(BIN)/ruff format --check server tests bench

typecheck: $(PY_GEN_STAMP)
	$(BIN)/mypy

# `buf breaking` (FILE rules, proto/buf.yaml) compares proto/ with the API as last
# published: proto/api-baseline.json, a buf image committed with every proto change.
# (Against the main branch it compared main with itself in CI, which runs on main, and
# never failed.) So a change that would break a generated client fails here; one that
# does not must come with `make proto-baseline`, or the check below fails and says so.
# BUF_AGAINST overrides what to compare with (e.g. '.git\#branch=main,subdir=proto').
BUF_BASELINE := proto/api-baseline.json
BUF_BASELINE_NOW := $(basename $(BUF_BASELINE)).now.json
BUF_AGAINST ?= $(BUF_BASELINE)

buflint: $(BUF_STAMP)
	cd proto && ../$(BUF) lint
	cd proto && ../$(BUF) format --diff --exit-code
	$(BUF) breaking proto --against '$(BUF_AGAINST)'
	@$(BUF) build proto --exclude-source-info -o $(BUF_BASELINE_NOW)
	@if cmp -s $(BUF_BASELINE_NOW) $(BUF_BASELINE); then rm -f $(BUF_BASELINE_NOW); else \
	  rm -f $(BUF_BASELINE_NOW); \
	  echo "buflint: proto/ changed since $(BUF_BASELINE); it breaks nothing (checked above):" \
	    "run 'make proto-baseline' and commit $(BUF_BASELINE) with it" >&2; exit 1; fi

# Records proto/ as the published API that later changes must not break.
proto-baseline: $(BUF_STAMP)
	$(BUF) build proto --exclude-source-info -o $(BUF_BASELINE)

run: $(PY_GEN_STAMP)
	$(BIN)/wahook serve --dev

bench: $(PY_GEN_STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(PY_GEN) tools/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage coverage.json

# Client code generation, builds and tests for Go, Java, Node and Python live in
# clients/clients.mk (targets proto-clients, clients-build, clients-test).
-include clients/clients.mk

# The container image (make image, make image-test) and the Kubernetes manifests'
# validation (make manifests, part of make check) live in deploy/deploy.mk.
-include deploy/deploy.mk
