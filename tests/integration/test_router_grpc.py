"""The router's gRPC face: Generate, GenerateStream, Feedback, Stats, health, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from iccache_sidecar.app import Runtime
from iccache_sidecar.gen.iccache.v1 import router_pb2 as pb
from iccache_sidecar.gen.iccache.v1 import router_pb2_grpc as pb_grpc


@pytest.fixture
async def channel(icc: Runtime) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{icc.grpc_port}") as ch:
        yield ch


def ask(text: str, **kw: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.Message(role="user", content=text)], max_tokens=8, **kw)


async def test_generate_and_stream(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.RouterStub(channel)
    reply = await stub.Generate(ask("Say hello."))
    assert reply.text.strip()
    assert reply.decision.request_id
    assert reply.decision.model in (pb.MODEL_CHOICE_SMALL, pb.MODEL_CHOICE_LARGE)
    assert reply.usage.completion_tokens > 0

    chunks = [c async for c in stub.GenerateStream(ask("Count to three."))]
    assert chunks[0].HasField("decision")
    assert "".join(c.delta for c in chunks).strip()
    assert chunks[-1].finish_reason or any(c.finish_reason for c in chunks)


async def test_prompt_form_and_forced_model(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.RouterStub(channel)
    reply = await stub.Generate(
        pb.GenerateRequest(prompt="The sky is", max_tokens=6, force_model=pb.MODEL_CHOICE_LARGE)
    )
    assert reply.decision.model == pb.MODEL_CHOICE_LARGE
    assert reply.decision.backend_model == "gemma3"
    assert reply.text


async def test_feedback_and_stats(icc: Runtime, channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.RouterStub(channel)
    reply = await stub.Generate(ask("Name a fruit."))
    ok = await stub.Feedback(pb.FeedbackRequest(request_id=reply.decision.request_id, score=0.9))
    assert ok.accepted
    stats = await stub.Stats(pb.StatsRequest())
    assert stats.requests >= 1
    assert stats.policy == "bandit"
    assert set(stats.backends) == {"small", "large"}


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "iccache.v1.Router"):
        status = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert status.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_and_describes_the_service(icc: Runtime) -> None:
    """A client without the .proto file (as grpcurl) learns the API from the server."""

    def discover() -> tuple[set[str], set[str]]:
        with grpc.insecure_channel(f"127.0.0.1:{icc.grpc_port}") as ch:
            db = ProtoReflectionDescriptorDatabase(ch)
            services = set(db.get_services())
            router = descriptor_pool.DescriptorPool(db).FindServiceByName("iccache.v1.Router")
            return services, {m.name for m in router.methods}

    services, methods = await asyncio.to_thread(discover)  # the server runs on this loop
    assert {"iccache.v1.Router", "grpc.health.v1.Health"} <= services
    assert methods == {"Generate", "GenerateStream", "Feedback", "Stats"}


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (pb.GenerateRequest(max_tokens=4), "exactly one of messages and prompt"),
        (
            pb.GenerateRequest(prompt="x", messages=[pb.Message(role="user", content="y")]),
            "exactly one of messages and prompt",
        ),
        (pb.GenerateRequest(messages=[pb.Message(role="robot", content="hi")]), "role"),
        (pb.GenerateRequest(prompt="hi", temperature=7.0), "temperature"),
        (
            pb.GenerateRequest(messages=[pb.Message(role="system", content="be nice")]),
            "non-empty user message",
        ),
    ],
)
async def test_invalid_requests_are_invalid_argument(
    channel: grpc.aio.Channel, request_: pb.GenerateRequest, needle: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.RouterStub(channel).Generate(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (err.value.details() or "")


async def test_unknown_request_feedback_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.RouterStub(channel).Feedback(pb.FeedbackRequest(request_id="nope", score=1.0))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
