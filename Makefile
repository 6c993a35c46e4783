# The README's three commands: `make setup`, `make test`, and (later) the main job.
VENV := .venv
BIN  := $(VENV)/bin

.PHONY: setup test lint typecheck unit integration clean

setup:
	scripts/setup

## Lint, type-check, then every test tier (unit, then integration with real services).
test: lint typecheck
	$(BIN)/pytest tests/unit tests/integration

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest tests/unit

integration:
	$(BIN)/pytest tests/integration

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
