# Every target builds its own virtualenv first, so each command works on a fresh machine that has
# only Python 3.11, pip and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench loadcheck install clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tests]'
	touch $(STAMP)

install: $(STAMP)

## The main job: sync a Mistral account served by the bundled emulator, then enrich sample data.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## The test suite (unit, integration against the emulator, standard Airbyte tests, conformance).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not image_tests" -q

## Source read benchmark: records/s and peak RSS against a plain page-by-page HTTP loop.
bench: $(STAMP)
	$(BIN)/python scripts/bench_source.py

## Emulator load check: requests/s it serves to 64 concurrent clients.
loadcheck: $(STAMP)
	$(BIN)/python -m mistral_emulator.loadcheck

clean:
	rm -rf $(VENV) build dist *.egg-info
