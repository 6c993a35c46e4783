# The README's three commands: `make setup`, `make test`, and (later) the main job.
VENV := .venv
BIN  := $(VENV)/bin

.PHONY: setup test lint typecheck unit integration clean cluster-build cluster-up cluster-down proto

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

## A local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler,
## kwok fake nodes) for kubectl and helm; KUBECONFIG is printed.
cluster-build:
	scripts/build-cluster-tools

cluster-up: cluster-build
	$(BIN)/python -m iccache_sidecar.local.cluster up --detach

cluster-down:
	$(BIN)/python -m iccache_sidecar.local.cluster down

## Regenerate the gRPC code from proto/ (a test fails when it is stale).
proto:
	$(BIN)/python scripts/gen_proto.py
