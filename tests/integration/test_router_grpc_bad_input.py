"""Client mistakes on the gRPC face: malformed bytes, oversized messages, missing or
out-of-range fields, deadlines already expired, streams cancelled mid-way. None of them
may be answered INTERNAL or UNKNOWN, every rejection says what is wrong, and the router
keeps serving (and holds no backend slot) afterwards."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import grpc
import pytest

from iccache_sidecar.app import Runtime
from iccache_sidecar.gen.iccache.v1 import router_pb2 as pb
from iccache_sidecar.gen.iccache.v1 import router_pb2_grpc as pb_grpc

GENERATE = "/iccache.v1.Router/Generate"
STREAM = "/iccache.v1.Router/GenerateStream"
FEEDBACK = "/iccache.v1.Router/Feedback"
CLIENT_MISTAKES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


@pytest.fixture
async def channel(icc: Runtime) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{icc.grpc_port}", options=options) as ch:
        yield ch


def ask(text: str, **kw: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.Message(role="user", content=text)], max_tokens=8, **kw)


async def still_serves(channel: grpc.aio.Channel) -> None:
    reply = await pb_grpc.RouterStub(channel).Generate(ask("Say yes."), timeout=120)
    assert reply.text.strip()


async def in_flight(channel: grpc.aio.Channel) -> float:
    stats = await pb_grpc.RouterStub(channel).Stats(pb.StatsRequest(), timeout=10)
    return sum(b.in_flight for b in stats.backends.values())


def raw(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    """A call that sends the given bytes as they are (no protobuf encoding)."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


# Bytes no client library would send: a truncated varint, a field with a length past the
# end, a wire type that does not exist, and a string field that is not UTF-8.
MALFORMED = {
    "truncated varint": b"\x20\xff",
    "length past the end": b"\x12\x7f\x0a",
    "wire type 7": b"\x0f",
    "not utf-8 in a string": b"\x0a\x02\xff\xfe",
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("method", [GENERATE, FEEDBACK])
async def test_malformed_bytes_are_invalid_argument(
    channel: grpc.aio.Channel, method: str, body: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(channel, method)(body, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert "could not be decoded" in (err.value.details() or ""), err.value.details()


async def test_malformed_bytes_on_a_stream_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream(STREAM, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call(MALFORMED["truncated varint"], timeout=10):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    await still_serves(channel)


async def test_oversized_message_is_resource_exhausted_naming_the_limit(
    icc: Runtime, channel: grpc.aio.Channel
) -> None:
    limit = icc.settings.server.max_body_bytes
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.RouterStub(channel).Generate(ask("x" * (limit + 1)), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(limit) in (err.value.details() or ""), err.value.details()
    await still_serves(channel)


WRONG = {
    "no messages, no prompt": (pb.GenerateRequest(), "exactly one of messages and prompt"),
    "both messages and prompt": (
        pb.GenerateRequest(messages=[pb.Message(role="user", content="hi")], prompt="hi"),
        "prompt",
    ),
    "unknown role": (
        pb.GenerateRequest(messages=[pb.Message(role="wizard", content="hi")]),
        "role",
    ),
    "temperature not a number": (ask("hi", temperature=math.nan), "temperature"),
    "temperature below zero": (ask("hi", temperature=-1.0), "temperature"),
    "top_p over one": (ask("hi", top_p=1.5), "top_p"),
    "unknown forced model": (ask("hi", force_model=99), "force_model"),
}


@pytest.mark.parametrize(("request_", "needle"), list(WRONG.values()), ids=list(WRONG))
async def test_wrong_fields_are_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel, request_: pb.GenerateRequest, needle: str
) -> None:
    for call in (pb_grpc.RouterStub(channel).Generate,):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request_, timeout=30)
        assert err.value.code() in CLIENT_MISTAKES, err.value
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert needle in (err.value.details() or ""), err.value.details()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.FeedbackRequest(request_id="", score=1.0), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FeedbackRequest(request_id="x", score=2.0), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FeedbackRequest(request_id="x", score=math.nan), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["no request id", "score over one", "score not a number"],
)
async def test_bad_feedback_is_invalid_argument(
    channel: grpc.aio.Channel, request_: pb.FeedbackRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.RouterStub(channel).Feedback(request_, timeout=10)
    assert err.value.code() == code, err.value
    assert err.value.details()


async def test_expired_deadlines_are_deadline_exceeded_and_the_router_goes_on(
    channel: grpc.aio.Channel,
) -> None:
    stub = pb_grpc.RouterStub(channel)
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Generate(ask("Tell me a long story."), timeout=0.001)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(100):  # the handlers are cancelled with their deadline
        if await in_flight(channel) == 0:
            break
        await asyncio.sleep(0.1)
    assert await in_flight(channel) == 0, "calls past their deadline kept backend slots"
    await still_serves(channel)


async def test_stream_cancelled_by_the_client_releases_its_backend(
    channel: grpc.aio.Channel,
) -> None:
    stub = pb_grpc.RouterStub(channel)
    for _ in range(3):
        call = stub.GenerateStream(
            pb.GenerateRequest(
                messages=[pb.Message(role="user", content="Count from one to two hundred.")],
                max_tokens=256,
            ),
            timeout=120,
        )
        first = await call.read()
        assert first is not grpc.aio.EOF
        call.cancel()

    async def released() -> bool:
        return await in_flight(channel) == 0

    for _ in range(100):
        if await released():
            break
        await asyncio.sleep(0.1)
    assert await in_flight(channel) == 0, "a cancelled stream kept its backend slot"
    await still_serves(channel)
