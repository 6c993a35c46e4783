"""Property-based fuzzing of the router's HTTP API from its own OpenAPI schema
(schemathesis): valid and schema-violating requests on every route. A client's mistake
is never answered with a 5xx, every rejection says what is wrong in OpenAI's error
shape, and every answer matches the schema.

The router runs as ``iccache serve`` in its own process, with real Redis and the real
embedder; both models are the instant stand-in (``standin_router``), so that the fuzzer
spends its time on the router's input handling rather than on decoding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from iccache_contract import names
from iccache_dev.bench.standin import StandInRouter, standin_router
from iccache_dev.local.redis import LocalRedis

# Per route and generation mode (a few seconds each against the stand-in);
# ICCACHE_FUZZ_EXAMPLES runs a deeper search.
EXAMPLES = int(os.environ.get("ICCACHE_FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def router(
    redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandInRouter]:
    with standin_router(tmp_path_factory.mktemp("fuzz"), redis_server.url, prefix="fuzz") as router:
        yield router
        # A fuzzed request may not take the router down: it still answers.
        assert router.process.exit_message() is None, router.process.exit_message()


@pytest.fixture(scope="module")
def router_url(router: StandInRouter) -> str:
    return router.url


@pytest.fixture(scope="module")
def router_schema(router_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{router_url}/openapi.json")


@schemathesis.check
def says_what_is_wrong(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx carries OpenAI's error object with a message (and a type)."""
    if 400 <= response.status_code < 500:
        body = json.loads(response.content or b"null")
        error = (body or {}).get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), f"{response.status_code} without an error object: {body!r}"
        assert error.get("message"), f"{response.status_code} with an empty message: {body!r}"
        assert error.get("type"), f"{response.status_code} without an error type: {body!r}"
    return None


# The routes the schema must have (a route missing from it would go unfuzzed).
ROUTES = {
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "GET /v1/models",
    "POST /v1/feedback",
    "POST /v1/responses",
    "GET /v1/responses/{response_id}",
    "DELETE /v1/responses/{response_id}",
    "POST /v1/embeddings",
    f"GET {names.HEALTH_PATH}",
    f"GET {names.READY_PATH}",
    f"GET {names.METRICS_PATH}",
}


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_no_client_input_gets_a_server_error(
    router_schema: Any, router_url: str, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in router_schema.get_all_operations()]
    assert {op.label for op in operations} >= ROUTES, [op.label for op in operations]
    checks = [
        schemathesis.checks.not_a_server_error,
        content_type_conformance,
        response_schema_conformance,
    ]
    tried: dict[str, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            label = case.operation.label
            tried[label] = tried.get(label, 0) + 1
            case.call_and_validate(
                base_url=router_url,
                checks=checks,
                additional_checks=[says_what_is_wrong],
                timeout=30,
            )

        try:
            run()
        except Unsatisfiable:
            # No input can break the schema of a route that takes none (GET /healthz).
            assert mode is GenerationMode.NEGATIVE, operation.label
            tried.setdefault(operation.label, 0)
    print(f"{mode.value} cases per route: {tried}")
    assert sum(tried.values()) >= len(ROUTES) * 5, tried


def test_router_log_has_no_tracebacks(router: StandInRouter) -> None:
    """Runs after the fuzzing in this module: nothing it sent made the router log an
    unhandled exception."""
    assert router.log is not None
    text = router.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]
