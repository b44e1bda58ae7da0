# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
OPA = $(shell scripts/tools.sh opa)
REGAL = $(shell scripts/tools.sh regal)
HAPI_JAR = $(shell scripts/hapi.sh jar)
PG_BIN = $(shell scripts/pg.sh bindir)

.PHONY: help venv lock tools hapi bundle run test test-policy test-python lint-python lint-policy fmt clean bench bench-1m bench-profile soak

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# requirements-dev.lock pins (with hashes) every package the venv holds: the runtime's and
# the test extra's, transitive ones too; requirements.lock the runtime's alone (the image).
# Both are made from pyproject.toml by `make lock`.
LOCK_FLAGS = --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links --no-emit-index-url

$(VENV)/.installed: pyproject.toml requirements-dev.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements-dev.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	$(VENV)/bin/pip check  # a dependency missing from the lock: run make lock
	touch $@

venv: $(VENV)/.installed  ## create the Python venv from requirements-dev.lock

lock: venv  ## re-resolve the lock files from pyproject.toml (UPGRADE=1: newest versions pyproject allows)
	$(VENV)/bin/pip install --quiet pip-tools==7.6.2
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) --output-file requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) --extra test --output-file requirements-dev.lock pyproject.toml

tools:  ## build the pinned opa and regal into the tools cache (first use only)
	@scripts/tools.sh opa >/dev/null && scripts/tools.sh regal >/dev/null
	@echo "opa:   $(OPA)"; echo "regal: $(REGAL)"

hapi:  ## build the HAPI FHIR test server (tools/hapi) into the tools cache (first use only)
	@scripts/hapi.sh jar >/dev/null
	@echo "hapi:  $(HAPI_JAR)"

ROSTER_FILE ?= dev/roster.json

bundle: venv tools  ## build and sign policies/ and the roster ($(ROSTER_FILE)) into var/bundles (serve/, archive/); render OPA's config
	$(PY) -m bundles.build --out var/bundles
	$(PY) -m bundles.roster $(ROSTER_FILE) --out var/bundles
	$(PY) -m bundles.opa_config --out var/opa/config.yaml --persistence-directory var/opa/persist

run: venv tools  ## start OPA, bundle server, demo upstream and sidecar; Ctrl-C stops all
	scripts/run.sh

test-policy: tools  ## opa check --strict, opa fmt, regal lint, opa test --coverage
	$(OPA) check --strict policies
	@out=$$($(OPA) fmt --list policies); if [ -n "$$out" ]; then echo "not opa-fmt formatted (run: make fmt):"; echo "$$out"; exit 1; fi
	$(REGAL) lint policies
	$(OPA) test --coverage --format=json policies > var-coverage.json || { $(OPA) test -v policies; rm -f var-coverage.json; exit 1; }
	@$(PY) -c 'import json,sys; c=json.load(open("var-coverage.json"))["coverage"]; print(f"policy line coverage: {c:.1f}%"); sys.exit(0 if c >= 90 else "coverage below 90%")'
	@rm -f var-coverage.json

test-python: venv tools hapi  ## pytest (integration tests run the real opa, a HAPI FHIR server and a throwaway PostgreSQL)
	LCR_OPA_BIN=$(OPA) LCR_HAPI_JAR=$(HAPI_JAR) LCR_PG_BIN=$(PG_BIN) $(PY) -m pytest

lint-python: venv  ## ruff format --check, ruff check, mypy (strict on sidecar, audit_store, bundles); settings in pyproject.toml
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: venv lint-python test-policy test-python  ## everything CI runs

bench: venv tools  ## benchmarks (results in bench/results/ and bench/overhead/RESULTS.md); ~10 min
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m bench.audit
	LCR_PG_BIN=$(PG_BIN) $(PY) -m bench.audit_fleet
	LCR_OPA_BIN=$(OPA) $(PY) -m bench.replay --rows 100000
	LCR_OPA_BIN=$(OPA) $(PY) -m bench.overhead
	LCR_OPA_BIN=$(OPA) $(PY) -m bench.shadow

bench-profile: venv tools  ## pyinstrument profile of the record path → bench/overhead/profile-*.txt (PROFILE.md reads them)
	LCR_OPA_BIN=$(OPA) $(PY) -m bench.overhead.profile

soak: venv tools  ## 180 s of mixed traffic at a steady rate; RSS, open files, latency sampled → bench/results/soak.json
	LCR_OPA_BIN=$(OPA) $(PY) -m bench.soak --seconds 180

bench-1m: venv tools  ## replay/impact on 1,000,000 logged decisions (generates and caches the log)
	LCR_OPA_BIN=$(OPA) $(PY) -m bench.replay --rows 1000000

fmt: tools venv  ## format the Rego and the Python in place (and apply ruff's safe fixes)
	$(OPA) fmt --write policies
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## remove the venv and local state (not the tools cache)
	rm -rf $(VENV) var
