# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode is written at install, not at first import: where PYTHONDONTWRITEBYTECODE is
# set (as on some CI hosts), every process would compile its imports again (5.5 s for
# `import broker.serve` against 2.3 s), and the test suite takes 2-3 times as long.
export UV_COMPILE_BYTECODE := 1
SOURCES := broker adapters tests benchmarks examples

.PHONY: run test lint format bench bench-orchestrators bench-deadlines bench-reload bench-tracking bench-retention setup clean

setup: $(BIN)/baton
	@$(if $(wildcard $(SOURCES)),$(BIN)/python -m compileall -q -j 0 $(wildcard $(SOURCES)) > /dev/null)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==0.13.9

$(BIN)/baton: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

# MAKE_PID (make's own pid: $(shell) runs as make's child), so that run.sh stops when
# make is sent SIGINT, which make keeps to itself. No shell between make and run.sh.
run: export MAKE_PID = $(shell echo $$PPID)
run: setup
	@scripts/run.sh

# Two workers (the machine's two cores); each orchestrator's tests run on one of them
# (tests/conftest.py: pytest_xdist_make_scheduler).
test: setup
	$(BIN)/pytest -q -n 2

lint: setup
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

bench: setup
	$(BIN)/python -m benchmarks

# Event accepted -> run created in real Airflow, Dagster and Prefect (starts all three).
bench-orchestrators: setup
	$(BIN)/python -m benchmarks.orchestrators

# Deadline passed -> alert at the sink, against a bare sorted-set poller (about 2 minutes).
bench-deadlines: setup
	$(BIN)/python -m benchmarks.deadlines

# A burst of 20,000 partitions with a produces chain behind it: dispatch rate, how soon
# run tracking is done after it, the chain's hop p50/p99 (also part of make bench).
bench-tracking: setup
	$(BIN)/python -m benchmarks.tracking

# Redis bytes per fired 2-input partition and per open input (20,000 of each), by key
# kind; then a soak of 1,000,000 partitions with every window at 30 s: memory must hold
# steady once the first window has passed (about 15-25 minutes).
bench-retention: setup
	$(BIN)/python -m benchmarks.retention

# Contracts reload time for 1,000 and 10,000 files.
bench-reload: setup
	$(BIN)/python -m benchmarks.reload

# docs/contract.schema.json is `baton schema`, committed for editors; tests/test_docs.py
# fails when it is out of date.
.PHONY: schema
schema: setup
	$(BIN)/baton schema > docs/contract.schema.json

clean:
	rm -rf $(VENV) $(TOOLS) .baton .pytest_cache .mypy_cache .ruff_cache
