# Every target builds its own virtualenv first, so each command works on a fresh machine that has
# only Python 3.11, pip and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# PyAirbyte pins older duckdb/protobuf than the connectors use, so it lives in a venv of its own
# (as PyAirbyte itself runs connectors), made here so the test suite finds it ready.
PYAIRBYTE_VENV  := out/pyairbyte-venv
PYAIRBYTE_STAMP := $(PYAIRBYTE_VENV)/.installed

.PHONY: demo test bench bench-quick loadcheck image-test install clean

# The connectors (setup.py) and the emulator (emulator/pyproject.toml) are separate distributions, so
# that a connector install carries no emulator; this venv, for the demo, tests and tools, has both.
# Two pip runs, connectors first: a venv made when the connectors' distribution still shipped the
# emulator's console script would otherwise lose it when that older install is replaced.
$(STAMP): setup.py emulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tests,bench]'
	$(BIN)/python -m pip install --quiet -e ./emulator
	touch $(STAMP)

$(PYAIRBYTE_STAMP):
	$(PYTHON) -m venv $(PYAIRBYTE_VENV)
	$(PYAIRBYTE_VENV)/bin/python -m pip install --quiet 'airbyte>=0.71,<0.72'
	touch $(PYAIRBYTE_STAMP)

install: $(STAMP)

## The main job: sync a Mistral account served by the bundled emulator, then enrich sample data.
demo: $(STAMP)
	$(BIN)/python tools/demo.py

## The test suite (lint and format first, then unit, integration against the emulator, standard
## Airbyte tests, conformance).
# Three workers on two cores: a third of the suite's time is waiting (rate-limit windows, retries,
# subprocesses), which a third worker fills.
test: $(STAMP) $(PYAIRBYTE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not image_tests" -q

## Benchmarks (minutes): source read against a plain HTTP loop; CPU per request of HTTP clients;
## destination start-up; destination against peers and the ceiling; text splitters compared;
## chunked embeddings under a token limit. Tables, JSON and a chart land in
## bench-results/.
bench: $(STAMP)
	$(BIN)/python tools/bench_startup.py
	$(BIN)/python tools/bench_source.py
	$(BIN)/python tools/bench_http_clients.py
	$(BIN)/python tools/bench_destination.py
	$(BIN)/python tools/bench_splitters.py
	$(BIN)/python tools/bench_chunking.py

bench-quick: $(STAMP)
	$(BIN)/python tools/bench_startup.py --runs 3
	$(BIN)/python tools/bench_source.py --files 5000 --batch-jobs 1000
	$(BIN)/python tools/bench_http_clients.py --requests 1000
	$(BIN)/python tools/bench_destination.py --quick
	$(BIN)/python tools/bench_chunking.py --docs 100 --target-seconds 10

## Emulator load check: requests/s it serves to 64 concurrent clients.
loadcheck: $(STAMP)
	$(BIN)/python -m mistral_emulator.loadcheck

## Build both connector images on a locally made base image and run spec, check, a read of every stream and
## a write in chat and embeddings mode inside them, against the emulator on loopback (root; minutes).
image-test: $(STAMP)
	$(BIN)/python tools/image_test.py

clean:
	rm -rf $(VENV) $(PYAIRBYTE_VENV) build dist *.egg-info emulator/build emulator/*.egg-info
