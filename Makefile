# The README's three commands: `make setup`, `make demo` (the main job) and `make test`.
VENV := .venv
BIN  := $(VENV)/bin

.PHONY: setup test demo bench lint typecheck layers unit integration containers e2e chart images clean cluster-build cluster-up cluster-down proto

setup:
	scripts/setup

## Lint, type-check, check the package layers, build and export the images (seconds when
## warm; the real node imports the archives), then every test tier.
test: lint typecheck layers
	$(BIN)/python -m iccache_dev.local.images build --if-tools
	$(BIN)/pytest tests/unit tests/integration tests/containers e2e

## The main job: the whole stack locally, real questions, one table (about 2.5 minutes; the first run also seeds the cache, about 2 more).
demo:
	$(BIN)/iccache demo

## Every system on Natural Questions; results in bench-results/ (see the README).
bench:
	$(BIN)/iccache bench

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

## The layers contract in pyproject.toml ([tool.importlinter]): who may import whom.
layers:
	$(BIN)/lint-imports

unit:
	$(BIN)/pytest tests/unit

integration:
	$(BIN)/pytest tests/integration

## The images built and run as the pods run them (builds them first, from cache when warm).
containers:
	$(BIN)/pytest tests/containers

## Every container image (operator, sidecar, redis, llama-server), tagged localhost/iccache/NAME:VERSION
## and exported to build/images/*.oci.tar; about 25 minutes cold (llama.cpp compiles), seconds warm.
images:
	$(BIN)/python -m iccache_dev.local.images build

## The chart and a whole install on the local control plane (or ICCACHE_E2E_KUBECONFIG).
e2e:
	$(BIN)/pytest e2e

## Refresh the chart's CRD copy, values schema and the plain manifests in deploy/.
chart:
	$(BIN)/python scripts/gen_chart.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## A local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler,
## kwok fake nodes) for kubectl and helm; KUBECONFIG is printed.
cluster-build:
	scripts/build-cluster-tools

cluster-up: cluster-build
	$(BIN)/python -m iccache_dev.local.cluster up --detach

cluster-down:
	$(BIN)/python -m iccache_dev.local.cluster down

## Regenerate the gRPC code from proto/ (a test fails when it is stale).
proto:
	$(BIN)/python scripts/gen_proto.py
