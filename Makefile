# Two commands do all the set-up: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export DVC_NO_ANALYTICS ?= 1

.PHONY: install browser postgres run test test-all test-first-run test-nights test-faults test-fast repro dag clean benchmarks bench-context bench-nightly bench-scale

install: $(VENV)/.installed

# pyproject.toml states the ranges; constraints.txt pins the exact tested versions.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("genie-flow needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --constraint constraints.txt --editable '.[dev]'
	touch $@

# `genie report --screenshot` and its test open the report in Debian's headless chromium.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (headless report check)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# `genie stack` and its tests start PostgreSQL from Debian's binaries (GENIE_PG_BIN names another folder).
PG_BIN ?= $(or $(GENIE_PG_BIN),/usr/lib/postgresql/15/bin)
postgres:
	@test -x $(PG_BIN)/initdb || { echo "installing PostgreSQL 15 (genie stack)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; }

run: install
	$(BIN)/genie run

# Two workers, one per core, each test file on one worker in order (tests/conftest.py gives each one torch thread
# and hands out the longest files first). The units and the CLI on the real components, and one whole night
# (about 4 min on 2 cores); the other tiers: test-nights, test-faults, or all of them as CI runs them: test-all.
test: install browser postgres
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

# Whole nights end to end on tiny budgets: caching, DVC, Dask, schedules, faults of one machine, benchmarks and
# report, the team's servers (about 24 min on 2 cores).
test-nights: install browser postgres
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder -m nights

test-all: test-first-run test test-nights test-faults

# The first run on a new machine: `genie prepare` with a new, empty Prefect home while every core is busy.
test-first-run: install
	tests/first_run.sh

# Races and faults of a team's nights on real servers (two machines, a promote, kill -9, a restart, the alerts only
# the server sends), then a month of nights shortened to twelve and collected by `genie gc`.
test-faults: install postgres
	$(BIN)/pytest -m faults -s tests/servers tests/flows/test_retention.py

# The inner loop: the unit tests of models/ and tasks/ (no Prefect server, no training beyond a tiny model).
test-fast: install
	$(BIN)/pytest -n 2 --dist loadfile tests/models tests/tasks

# The evidence: both benchmarks over three generator seeds, then the report (about 95 min on 2 CPU cores).
benchmarks: install browser
	$(BIN)/genie benchmark few-shot
	$(BIN)/genie benchmark long-tail
	$(BIN)/genie report --screenshot artifacts/report.png

# Where context misleads: the long-tail benchmark on the embedded scenes over three generator seeds, then its report
# (about 50 min on 2 CPU cores; docs/context.md).
bench-context: install browser
	$(BIN)/genie benchmark long-tail --set dataset=scenes
	$(BIN)/genie report --set dataset=scenes --screenshot artifacts/scenes-report.png

# Wall time of a night: cold, warm, +1% images, +1 class, each `genie run` in a fresh folder (about 20 min).
bench-nightly: install
	$(BIN)/python benchmarks/nightly_cost.py --out artifacts/nightly_cost.json

# A night's cost as the data grows: drawn datasets of 20 / 100 / 400 classes, edit folders up to 200k edits (about 25 min).
bench-scale: install
	$(BIN)/genie benchmark scale --out docs/scale/after.json

clean:
	rm -rf artifacts mlruns mlflow.db .genie

# dvc.yaml's stages need data/ first: `genie prepare` exports / checks it and updates data.dvc.
repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" sh -c 'genie prepare >/dev/null && dvc repro'

dag: install
	$(BIN)/dvc dag
