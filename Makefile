# syncd developer commands. Each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install demo test check lint typecheck pytest docs bench torture lock clean proto

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/syncd demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy syncd

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The inner loop (about a minute; 2.5 with PostgreSQL): lint, types and every test that starts no
# subprocess and no daemon (tests/README.md), in CHECK_WORKERS processes: the
# fast tier mostly waits on loopback I/O, so more workers than cores pays.
# `make test` runs everything, serially, as CI does.
CHECK_WORKERS ?= 4
check: lint typecheck
	$(BIN)/python -m pytest -q -m "not slow" -n $(CHECK_WORKERS) --dist worksteal $(PYTEST_ARGS)

# Regenerate docs/configuration.md from the config models (a test fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -m syncd.config.reference > docs/configuration.md

# Throughput, CPU per lead, memory and idle cost against the emulators (10-15 min;
# BENCH_ARGS=--quick for a 2-minute smoke run), then the latency of stream and poll
# modes (benchmarks/latency.py: about 5 minutes, --quick about 3), then call-outcome hook
# throughput (benchmarks/bench_hooks.py: under a minute). PostgreSQL runs when
# SYNCD_TEST_POSTGRES_URL is set. Results: benchmarks/results/<date>.json.
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/latency.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_hooks.py $(BENCH_ARGS)

# Crash torture: >= 50 SIGKILLs of `syncd run` under random faults (TORTURE_SEED, TORTURE_KILLS,
# TORTURE_RECORDS override the defaults); `make test` runs a 5-kill version.
torture: $(STAMP)
	TORTURE_KILLS=$${TORTURE_KILLS:-50} TORTURE_RECORDS=$${TORTURE_RECORDS:-3000} \
		$(BIN)/python -m pytest tests/e2e/test_torture.py -s --timeout 3600

# Pin every runtime dependency, with hashes, for the container image (the Dockerfile
# installs from requirements.lock). Run after changing the dependencies in pyproject.toml,
# or to take newer releases; `make install` and `make test` keep using the ranges.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dist build

# Regenerate the Pub/Sub API modules from syncd/pubsub/pubsub_api.proto.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. \
		--mypy_out=. --mypy_grpc_out=. \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		syncd/pubsub/pubsub_api.proto
