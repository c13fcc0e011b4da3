# Channels Chat Workshop. `make` (or `make help`) lists the targets.
#
# Every target that runs Python first makes sure .venv exists and holds the
# pinned requirements (tools/bootstrap.sh); nothing needs installing by hand.

PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
REDIS_PORT ?= 6379
FROM ?=
TO ?=
PYTEST_ARGS ?=
WORDS ?=
FLAKE_STEP ?= 4
RUNS ?= 20
WORKERS ?= 2
BROWSER_TESTS ?= chat/tests.py

# A Python named on the command line (or in the environment) gets a virtualenv of
# its own, .venv-X.Y, so `make test PYTHON=python3.10` really runs 3.10 even when
# .venv already holds another version.
ifeq ($(origin VENV),undefined)
ifneq ($(filter command line environment,$(origin PYTHON)),)
VENV := .venv-$(shell "$(PYTHON)" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
else
VENV := .venv
endif
endif
PY := $(VENV)/bin/python
READY := $(VENV)/.requirements-installed

# A step is a folder stepN_name/ with a manage.py: adding a folder adds a step.
STEP_DIRS := $(patsubst %/manage.py,%,$(wildcard step*_*/manage.py))
STEPS := $(sort $(foreach dir,$(STEP_DIRS),$(patsubst step%,%,$(firstword $(subst _, ,$(dir))))))

# $(call require_step,N): stop with a clear message unless step N exists.
require_step = $(if $(wildcard step$(1)_*/manage.py),,$(error There is no step "$(1)". The steps are: $(STEPS). For example: make step1))

.DEFAULT_GOAL := help
.PHONY: help bench bench-quick step5-workers demo-inmemory-workers test test-tools flake-check diff diff-html diffs check-steps redis lint format clean distclean

help: ## list the targets
	@echo "Channels Chat Workshop. Steps: $(STEPS)"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9%-]+:.*## / {gsub("%", "N", $$1); printf "  make %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: PORT=$(PORT) HOST=$(HOST) PYTHON=$(PYTHON) REDIS_URL=redis://127.0.0.1:6379/0 (use Redis)"

step%: ## run step N on http://127.0.0.1:8000/chat/ (PORT=8001 to change)
	$(call require_step,$*)
	@$(MAKE) --no-print-directory --silent $(READY)
	@$(PY) -m workshop.cli serve $* --host "$(HOST)" --port "$(PORT)"

step5-workers: ## step 5 under uvicorn with several workers on Redis (WORKERS=2)
	@$(MAKE) --no-print-directory --silent $(READY)
	@$(PY) -m workshop.cli serve-workers 5 --host "$(HOST)" --port "$(PORT)" --workers "$(WORKERS)"

demo-inmemory-workers: ## two workers, one room: who gets a message on the in-memory layer, and on Redis
	@$(MAKE) --no-print-directory --silent $(READY)
	@$(PY) -m workshop.cli demo-workers 5

test: $(READY) ## run every step's tests, each in its own process, then the tooling's
	@$(PY) -m workshop.cli test --pytest-args="$(PYTEST_ARGS)"

test-step%: ## run step N's tests
	$(call require_step,$*)
	@$(MAKE) --no-print-directory --silent $(READY)
	@$(PY) -m workshop.cli test $* --pytest-args="$(PYTEST_ARGS)"

test-tools: $(READY) ## run the tooling's tests (lesson checks, troubleshooting entries)
	@$(PY) -m workshop.cli test tools --pytest-args="$(PYTEST_ARGS)"

flake-check: ## run step 4's browser tests 20 times in a row (RUNS=, FLAKE_STEP=)
	$(call require_step,$(FLAKE_STEP))
	@$(MAKE) --no-print-directory --silent $(READY)
	@$(PY) -m workshop.cli flake-check $(FLAKE_STEP) --runs "$(RUNS)" $(BROWSER_TESTS)

bench: $(READY) ## measure every step's server against a raw WebSocket baseline; regenerates notes/performance.md
	@$(PY) -m workshop.bench.run

bench-quick: $(READY) ## the 30-second smoke run of the benchmark (CI): every variant runs and delivers
	@$(PY) -m workshop.bench.run --quick

diff: $(READY) ## what a lesson changed: make diff FROM=2 TO=3 (WORDS=1: mark changed words)
	@$(PY) -m workshop.cli diff --from "$(FROM)" --to "$(TO)" $(if $(WORDS),--words)

diff-html: $(READY) ## the same as a page to project: build/stepN-to-stepM.html
	@$(PY) -m workshop.cli diff --html --from "$(FROM)" --to "$(TO)"

diffs: $(READY) ## regenerate notes/diffs/ (every consecutive pair of steps)
	@$(PY) -m workshop.cli diffs

check-steps: $(READY) ## check that each step changes only its lesson's files (lessons.ini)
	@$(PY) -m workshop.cli check-steps

redis: $(READY) ## run redis-server on port 6379 (or say how to install it)
	@$(PY) -m workshop.cli redis --port "$(REDIS_PORT)"

lint: $(READY) ## ruff check and format check over every step and the tooling
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(READY) ## let ruff format and fix what it can
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean: ## remove caches and test leftovers (keeps every .venv and db.sqlite3)
	find . -path './.venv*' -prune -o -type d \( -name __pycache__ -o -name .pytest_cache -o -name test-artifacts \) -print -exec rm -rf {} +
	rm -rf .ruff_cache bench-results build

distclean: clean ## also remove .venv and any .venv-X.Y (the next command reinstalls it)
	rm -rf .venv .venv-*

$(READY): requirements.txt tools/bootstrap.sh
	@PYTHON="$(PYTHON)" VENV="$(VENV)" sh tools/bootstrap.sh
