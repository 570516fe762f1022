# The two commands of a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install fedstream with what it needs; Kafka comes from Maven Central.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit integration bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedstream demo

lint: $(STAMP)
	$(BIN)/ruff check app topics tests bench
	$(BIN)/ruff format --check app topics tests bench

typecheck: $(STAMP)
	$(BIN)/mypy app topics bench

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The integration tests start their own real Kafka broker (tests/integration/conftest.py).
integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

test: lint typecheck
	$(BIN)/pytest tests

clean:
	rm -rf $(VENV) build *.egg-info
