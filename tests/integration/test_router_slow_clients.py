"""Slow clients against ``iccache serve`` (real Redis and embedder, stand-in models that
answer after 2 s): a slow-loris crowd sending request heads a byte at a time, a
connection that never sends anything and a body that stops halfway are each closed
after the server's deadline (408 where a request had begun), counted, and never hold the
server: a normal request is served meanwhile, and a request slower than the head
deadline is not cut by it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import httpx
import pytest

from iccache_dev.bench.standin import StandInRouter, standin_router
from iccache_dev.local.redis import LocalRedis

HEAD, BODY, DELAY = 1.0, 1.0, 2.0
CROWD = 200
ASK = {"model": "iccache", "messages": [{"role": "user", "content": "Capital of Peru?"}]}
HEAD_START = b"POST /v1/chat/completions HTTP/1.1\r\nhost: router\r\n"


@pytest.fixture(scope="module")
def router(
    redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandInRouter]:
    server = {"header_timeout_seconds": HEAD, "body_timeout_seconds": BODY}
    workdir = tmp_path_factory.mktemp("slow-clients")
    with standin_router(workdir, redis_server.url, delay=DELAY, server=server, prefix="slow") as r:
        yield r


def port_of(router: StandInRouter) -> int:
    return int(router.url.rsplit(":", 1)[1])


async def until_closed(reader: asyncio.StreamReader, limit: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (the test fails
    after ``limit`` seconds instead of hanging if it never does)."""
    return await asyncio.wait_for(reader.read(), timeout=limit)


async def slow_counted(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(r'^iccache_request_errors_total\{kind="slow_client"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_slow_loris_crowd_is_cut_off_and_others_are_served(router: StandInRouter) -> None:
    port = port_of(router)
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        before = await slow_counted(client)
        crowd = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CROWD)]

        async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
            """A header that never ends, a byte every 0.2 s until the server answers;
            then everything it sends until it closes."""
            writer.write(HEAD_START)
            while True:
                writer.write(b"x")
                try:
                    first = await asyncio.wait_for(reader.read(4096), timeout=0.2)
                    break
                except TimeoutError:
                    continue
            rest = await until_closed(reader)
            writer.close()
            return first + rest

        senders = [asyncio.create_task(dribble(r, w)) for r, w in crowd]
        served = await client.post("/v1/chat/completions", json=ASK)
        assert served.status_code == 200, served.text
        answers = await asyncio.wait_for(asyncio.gather(*senders), timeout=60)
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
        error = json.loads(answers[0].split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "request_timeout"
        assert f"{HEAD:g} s" in error["message"]
        assert await slow_counted(client) - before == CROWD
        again = await client.post("/v1/chat/completions", json=ASK)
        assert again.status_code == 200, again.text


async def test_a_silent_connection_is_closed_without_an_answer(router: StandInRouter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(router))
    assert await until_closed(reader) == b""
    writer.close()


async def test_a_body_that_stops_halfway_gets_408(router: StandInRouter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(router))
    body = json.dumps(ASK).encode()
    head = HEAD_START + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
    writer.write(head % len(body) + body[:10])
    answer = await until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_timeout"
    assert "body" in error["message"]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    return int(head.split()[1]), await reader.readexactly(length)


async def test_slow_requests_and_kept_alive_connections_are_not_cut(
    router: StandInRouter,
) -> None:
    # One connection: a request that takes DELAY (> HEAD) at the backend, then a pause
    # longer than HEAD but shorter than the idle timeout, then a second request. The
    # deadline covers request heads only.
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(router))
    body = json.dumps(ASK).encode()
    request = HEAD_START + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
    request = request % len(body) + body
    writer.write(request)
    status, answer = await read_response(reader)
    assert status == 200, answer
    await asyncio.sleep(HEAD * 1.5)  # the pause is the scenario, not a wait for something
    writer.write(request)
    status, answer = await read_response(reader)
    writer.close()
    assert status == 200, answer
    assert json.loads(answer)["choices"][0]["message"]["content"]
