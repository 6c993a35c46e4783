"""The systems compared, and how one request is sent to each.

Every router-based system is the real router (in-process) over the same seeded cache,
with the cache frozen during the run (no admissions, no exact-match answers) so that all
systems see the same examples. The plain semantic cache returns the nearest cached
answer when it is similar enough, as GPTCache or RedisVL's SemanticCache do, and asks
the large model otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from iccache_sidecar.backends.client import Backend
from iccache_sidecar.core.domain import ChatMessage, GenerationParams
from iccache_sidecar.embedding import BatchingEmbedder
from iccache_sidecar.storage.examples import ExampleStore

TENANT = "bench"


@dataclass(frozen=True)
class SystemSpec:
    name: str
    kind: str  # "router" or "semantic"
    router: dict[str, dict[str, Any]] = field(default_factory=dict)  # settings sections
    feedback: bool = False  # send reference-based feedback after each answer


BUDGETS = (0.01, 0.02, 0.05)  # the quality budgets compared (iccache-budget-<max_loss>)
# A benchmark is a few hundred requests, not the thousands a deployment sees, so the
# budget steers on small evidence: it acts from the 20th judged answer and moves the bar
# 0.05 at a time every 10; until then only a tenth of what the bandit would offload goes
# to the small model (the router's default unproven_share), and the idle small model
# answers the held ones too (probes, judged against the large answer). Half the small
# answers get a shadow comparison while the large model is idle; the shadow calls' and
# the probes' cost is in each budgeted system's throughput. Every router-based system
# starts with nothing learned (run.forget_learning).
BENCH_QUALITY = {"shadow_rate": 0.5, "min_samples": 20, "hold": 10, "step": 0.05}


def budgeted(max_loss: float) -> SystemSpec:
    """The bandit with a quality budget of ``max_loss``."""
    quality = {**BENCH_QUALITY, "max_loss": max_loss}
    return SystemSpec(
        f"iccache-budget-{max_loss:g}",
        "router",
        {"routing": {"policy": "bandit", "quality": quality}},
        feedback=True,
    )


# The large model verifies small answers from its token log-probabilities (one prefill):
# in verify mode a failed answer is replaced by the large model's before it is returned.
VERIFY = {"enabled": True, "gate": True}


def budgeted_by_verifier(max_loss: float) -> SystemSpec:
    """The bandit with a quality budget whose comparator is the verifier: every small
    answer is checked (a prefill) instead of sampled shadows and probes' comparisons."""
    quality = {**BENCH_QUALITY, "max_loss": max_loss}
    return SystemSpec(
        f"iccache-budget-verifier-{max_loss:g}",
        "router",
        {
            "routing": {"policy": "bandit", "quality": quality},
            "verifier": {"enabled": True, "gate": False},
        },
        feedback=True,
    )


# The large model begins every answer it is routed; an answer whose first 16 tokens it
# is unsure of (least top-token log-probability below -2.0) goes to the small model.
OPENING = {"enabled": True}
SEMANTIC_THRESHOLD = 0.9  # the plain semantic cache's bar, and iccache's reuse bar

SYSTEMS: dict[str, SystemSpec] = {
    s.name: s
    for s in (
        SystemSpec(
            "large-only",
            "router",
            {"routing": {"policy": "always-large"}, "retrieval": {"max_examples": 0}},
        ),
        SystemSpec(
            "small-only",
            "router",
            {"routing": {"policy": "always-small"}, "retrieval": {"max_examples": 0}},
        ),
        SystemSpec("semantic-cache", "semantic"),
        SystemSpec("iccache-bandit", "router", {"routing": {"policy": "bandit"}}, feedback=True),
        SystemSpec(
            "iccache-threshold", "router", {"routing": {"policy": "threshold"}}, feedback=True
        ),
        *(budgeted(loss) for loss in BUDGETS),
        *(budgeted_by_verifier(loss) for loss in BUDGETS),
        SystemSpec(
            "iccache-verify",
            "router",
            {"routing": {"policy": "bandit"}, "verifier": VERIFY},
            feedback=True,
        ),
        SystemSpec(
            "iccache-verify-all",
            "router",
            {"routing": {"policy": "always-small"}, "verifier": VERIFY},
            feedback=True,
        ),
        SystemSpec(
            "iccache-opening",
            "router",
            {"routing": {"policy": "always-large"}, "opening": OPENING},
            feedback=True,
        ),
        SystemSpec(
            "iccache-opening-reuse",
            "router",
            {
                "routing": {"policy": "always-large", "reuse_similarity": SEMANTIC_THRESHOLD},
                "opening": OPENING,
            },
            feedback=True,
        ),
        SystemSpec(
            "iccache-bandit-opening",
            "router",
            {"routing": {"policy": "bandit"}, "opening": OPENING},
            feedback=True,
        ),
    )
}


@dataclass
class Outcome:
    question: str
    response: str = ""
    route: str = ""
    latency: float = 0.0
    ttft: float = 0.0
    error: str = ""
    request_id: str = ""


async def send_to_router(
    http: aiohttp.ClientSession, base_url: str, messages: list[dict[str, str]], max_tokens: int
) -> Outcome:
    """One streamed chat request; the route comes from the first chunk's decision."""
    out = Outcome(question=messages[-1]["content"])
    body = {
        "model": "iccache",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
    }
    start = time.perf_counter()
    parts: list[str] = []
    async with http.post(f"{base_url}/chat/completions", json=body) as r:
        if r.status != 200:
            out.error = f"{r.status}: {(await r.text())[:200]}"
            return out
        async for raw in r.content:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if "error" in chunk:
                out.error = str(chunk["error"])
            if "iccache" in chunk:
                out.route = chunk["iccache"]["route"]
                out.request_id = chunk["iccache"]["request_id"]
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content") or ""
                if text and not out.ttft:
                    out.ttft = time.perf_counter() - start
                parts.append(text)
    out.latency = time.perf_counter() - start
    out.response = "".join(parts)
    return out


@dataclass
class SemanticCache:
    """Return the nearest cached answer at or above the threshold, else ask the large
    model (and count its tokens)."""

    store: ExampleStore
    embedder: BatchingEmbedder
    large: Backend
    threshold: float = SEMANTIC_THRESHOLD
    tokens: int = 0

    async def send(self, messages: list[ChatMessage], max_tokens: int) -> Outcome:
        out = Outcome(question=messages[-1].content)
        start = time.perf_counter()
        vector = await self.embedder.embed(out.question)
        found = await self.store.search(TENANT, vector, 1)
        if found and found[0].similarity >= self.threshold:
            out.response, out.route = found[0].response, "cache"
        else:
            reply = await self.large.complete(
                messages, GenerationParams(max_tokens=max_tokens, temperature=0.0)
            )
            out.response, out.route = reply.text, "large"
            self.tokens += reply.usage.prompt_tokens + reply.usage.completion_tokens
        out.latency = out.ttft = time.perf_counter() - start
        return out
