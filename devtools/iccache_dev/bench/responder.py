"""An OpenAI-compatible server that answers instantly (``python -m ... --port P``), or
after ``--delay`` seconds.

Stands in for both models when measuring the router's own overhead, and where a test
needs a backend whose timing it controls (shutdown, load); a bare aiohttp server so that
the stand-in itself takes as little of the machine as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web

ANSWER = "Canberra."
DELAY = web.AppKey("delay", float)
REPLY = web.AppKey("reply", str)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if delay := request.app[DELAY]:
        await asyncio.sleep(delay)
    prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"])
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 2,
        "total_tokens": prompt_tokens + 2,
    }
    base: dict[str, Any] = {"id": "r", "created": int(time.time()), "model": body["model"]}
    if not body.get("stream"):
        message = {"role": "assistant", "content": request.app[REPLY]}
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        return web.json_response(
            {**base, "object": "chat.completion", "usage": usage, "choices": [choice]}
        )
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    chunks: list[dict[str, Any]] = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": request.app[REPLY]},
                    "finish_reason": None,
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": usage},
    ]
    for chunk in chunks:
        event = {**base, "object": "chat.completion.chunk", **chunk}
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "responder", "object": "model"}]})


def create_app(delay: float = 0.0, answer: str = ANSWER) -> web.Application:
    app = web.Application()
    app[DELAY] = delay
    app[REPLY] = answer
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--answer", default=ANSWER, help="what it answers, to every request")
    args = parser.parse_args()
    web.run_app(
        create_app(args.delay, args.answer),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
