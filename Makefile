# Two commands do all the set-up: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export DVC_NO_ANALYTICS ?= 1

.PHONY: install run test repro dag clean

install: $(VENV)/.installed

# pyproject.toml states the ranges; constraints.txt pins the exact tested versions.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("genie-flow needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --constraint constraints.txt --editable '.[dev]'
	touch $@

run: install
	$(BIN)/genie run

test: install
	$(BIN)/pytest

clean:
	rm -rf artifacts mlruns mlflow.db .genie

# dvc.yaml's stages need data/ first: `genie prepare` exports / checks it and updates data.dvc.
repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" sh -c 'genie prepare >/dev/null && dvc repro'

dag: install
	$(BIN)/dvc dag
