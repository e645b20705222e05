# TAINA — two commands on a fresh machine:
#   make run    install everything (Python packages, embedded models) and serve on port 8000
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.taina-installed
PORT   ?= 8000
# Loopback: without TWILIO_AUTH_TOKEN `taina serve` refuses other addresses (make run HOST=0.0.0.0)
HOST   ?= 127.0.0.1

.PHONY: run test install models lint format clean bench

run: models
	@echo ">> Starting TAINA on $(HOST):$(PORT)"
	$(BIN)/taina serve --host $(HOST) --port $(PORT)

test: models
	@echo ">> Lint"
	$(BIN)/ruff check .
	@echo ">> Debian packages for the tests (chromium, sox, human Spanish speech)"
	./scripts/install_test_packages.sh || echo ">> Some test packages are missing: the tests that need them will say they were skipped"
	@echo ">> Test suite"
	$(BIN)/pytest -ra

install: $(STAMP)

$(BIN)/python:
	@echo ">> Creating virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo ">> Installing Python packages (first time: a few minutes)"
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -e '.[test]'
	@echo ">> Installing the Silero VAD model package (ONNX file only: torch is not needed)"
	$(BIN)/pip install --disable-pip-version-check -q --no-deps 'silero-vad==6.2.3'
	touch $(STAMP)

models: install
	@echo ">> Preparing embedded models (done once, cached and checksum-verified)"
	$(BIN)/taina models install

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
