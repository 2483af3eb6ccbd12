# Two commands on a fresh machine: `make demo` and `make test`. Everything else
# they need (uv, the virtualenv, the Go-built binaries) is installed on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help uv venv binaries tools crds lint test unit integration demo bench clean

help:
	@echo "make demo   - bring up the local control plane, S3, GPU node and operator; run a VideoGenJob"
	@echo "make test   - the whole suite (lint, unit and integration against the real API server)"
	@echo "make crds   - regenerate crds/ from the contract (api/videogen_api)"
	@echo "make bench  - benchmarks (results in bench/)"

uv:
	@if [ ! -x "$(UV)" ]; then \
	  echo "==> installing uv (Python package manager) with pip"; \
	  python3 -m pip install --user --quiet uv; \
	fi

# The first sync downloads torch and friends (several GB); later syncs reuse uv's cache.
venv: uv
	@echo "==> syncing the virtualenv (.venv) with uv"
	@$(UV) sync --all-extras --frozen || $(UV) sync --all-extras

binaries:
	@hack/build-binaries.sh >/dev/null

# promtool and the gopher-lua health harness: a cache of their own, so the cluster binaries never rebuild for them;
# and Kueue's CRDs (from its Go module) for the tests that play Kueue's part.
tools:
	@hack/build-tools.sh >/dev/null
	@hack/fetch-kueue-crds.sh >/dev/null

crds: venv
	$(PY) -m videogen_api.crd --out crds/videogenjobs.yaml --models-out crds/videogenmodels.yaml
	cp crds/videogenjobs.yaml crds/videogenmodels.yaml crds/kopf-peering.yaml charts/videogen-operator/crds/

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: venv binaries tools lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv tools
	$(PY) -m pytest -m "not cluster and not s3" $(PYTEST_ARGS)

demo: venv binaries
	$(PY) -m videogen_devcluster demo

bench: venv binaries
	$(PY) -m pytest bench $(PYTEST_ARGS) -p no:cacheprovider -s

clean:
	rm -rf .venv .devcluster out
