# Channels Chat Workshop. `make` (or `make help`) lists the targets.
#
# Each target is a short name for a `python workshop.py <command>`, which does the
# work: it makes .venv with the pinned requirements the first time, and works the
# same without make (on Windows too). `make help` shows both forms.

# workshop.py runs on a Python 3.7 or newer found here (python3, else python) and
# makes .venv, with itself or with the Python named on the command line or in the
# environment (make step1 PYTHON=python3.12): that one is checked by workshop.py,
# which says clearly what is wrong with it. A named Python is the one .venv is
# made with, and re-made with if it had another; later commands keep using it.
LAUNCHER := $(shell for python in python3 python; do \
	"$$python" -c 'import sys; sys.exit(sys.version_info < (3, 7))' >/dev/null 2>&1 \
	&& { echo "$$python"; break; }; done)
# `exec`: the shell that runs a recipe becomes the command, so that Ctrl+C stops the
# server and the command ends normally (a shell left waiting would die of the
# Ctrl+C, and make would report "Interrupt").
WORKSHOP = $(if $(LAUNCHER),exec "$(LAUNCHER)" workshop.py$(if $(filter command line environment,$(origin PYTHON)), --python "$(PYTHON)"),$(error No python3 or python (3.7 or newer) on the PATH: install Python 3.10 or newer))
SERVER_OPTIONS := $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)") $(if $(WORKERS),--workers "$(WORKERS)")
TEST_OPTIONS := $(if $(PYTEST_ARGS),--pytest-args "$(PYTEST_ARGS)") $(if $(JOBS),--jobs "$(JOBS)")

.DEFAULT_GOAL := help
.PHONY: help start check compare run manage admin test test-tools ci standalone flake-check diff diff-html diffs check-steps redis demo-inmemory-workers bench bench-quick lint format clean distclean

help:
	@$(WORKSHOP) help

# Several patterns can match a name such as step7-workers: make takes the one with
# the shortest stem ("7").
step%-workers:
	@$(WORKSHOP) workers $* $(SERVER_OPTIONS)

step%-stack:
	@$(WORKSHOP) stack $* $(if $(PORT),--port "$(PORT)")

step%:
	@$(WORKSHOP) step $* $(SERVER_OPTIONS)

# Do the workshop yourself, in workspace/ (see README.md, "Do it yourself").
start:
	@$(WORKSHOP) start $(or $(STEP),$(error Which step? For example: make start STEP=2)) $(if $(FORCE),--force)

check:
	@$(WORKSHOP) check $(STEP) $(if $(DETAILS),--details) $(if $(QUICK),--quick)

compare:
	@$(WORKSHOP) compare $(STEP) $(if $(ALL),--all)

# make manage ARGS="startapp chat": manage.py in workspace/, with the workshop's Python.
manage:
	@$(WORKSHOP) manage $(ARGS)

admin:
	@$(WORKSHOP) admin $(ARGS)

run:
	@$(WORKSHOP) run $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

test:
	@$(WORKSHOP) test $(TEST_OPTIONS)

test-tools:
	@$(WORKSHOP) test tools $(TEST_OPTIONS)

test-step%:
	@$(WORKSHOP) test $* $(TEST_OPTIONS)

ci:
	@$(WORKSHOP) ci

standalone:
	@$(WORKSHOP) standalone $(STEP)

demo-inmemory-workers:
	@$(WORKSHOP) demo-inmemory-workers

flake-check:
	@$(WORKSHOP) flake-check $(FLAKE_STEP) $(if $(RUNS),--runs "$(RUNS)") $(if $(DATABASE),--database "$(DATABASE)")

diff:
	@$(WORKSHOP) diff $(if $(FROM),--from "$(FROM)") $(if $(TO),--to "$(TO)") $(if $(WORDS),--words)

diff-html:
	@$(WORKSHOP) diff-html $(if $(FROM),--from "$(FROM)") $(if $(TO),--to "$(TO)")

diffs:
	@$(WORKSHOP) diffs

check-steps:
	@$(WORKSHOP) check-steps

redis:
	@$(WORKSHOP) redis $(if $(REDIS_PORT),--port "$(REDIS_PORT)")

bench:
	@$(WORKSHOP) bench

bench-quick:
	@$(WORKSHOP) bench --quick

lint:
	@$(WORKSHOP) lint

format:
	@$(WORKSHOP) format

clean:
	@$(WORKSHOP) clean

distclean:
	@$(WORKSHOP) distclean
