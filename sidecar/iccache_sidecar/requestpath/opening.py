"""Routing by the large model's opening: the large model begins the answer with its
token log-probabilities; after ``opening.tokens`` tokens the router either lets it go
on (sure) or stops it and lets the small model answer with examples (unsure).

Stopping is closing the stream: the model servers stop generating when the client goes
away (vLLM, llama.cpp's server and llama-cpp-python's all do), so an unsure opening
costs the prompt's prefill and the opening's tokens, nothing more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from iccache_contract.settings import OpeningSettings
from iccache_sidecar.core.domain import Delta, Route, RouterRequest, Usage
from iccache_sidecar.core.opening import (
    ASK_LOGPROBS,
    Opening,
    judge,
    reads_opening,
    top_logprobs,
    without_logprobs,
)
from iccache_sidecar.core.prompting import prompt_tokens
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.aftercare import Aftercare
from iccache_sidecar.requestpath.fitting import fits, refused_content
from iccache_sidecar.requestpath.generation import Generator
from iccache_sidecar.requestpath.planning import Plan
from iccache_sidecar.requestpath.ports import Backends

# Decisions the opening never overrides: the client's, and the cache's own refusal.
BINDING_POLICIES = frozenset({"forced", "ineligible"})


class OpeningGate:
    def __init__(
        self,
        settings: OpeningSettings,
        backends: Backends,
        generator: Generator,
        aftercare: Aftercare,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.generator = generator
        self.aftercare = aftercare
        self.metrics = metrics

    def applies(self, plan: Plan, req: RouterRequest, *, streamed: bool) -> bool:
        """Whether this request's large answer is decided on its opening."""
        s, d = self.settings, plan.decision
        if not s.enabled or (streamed and not s.streams):
            return False
        if d.route is not Route.LARGE or d.policy in BINDING_POLICIES or req.force is not None:
            return False
        if not reads_opening(req.params.passthrough):
            return False
        small = self.backends[Route.SMALL]
        return (
            small.load.healthy
            and fits(small.settings, req)
            and not refused_content(small.settings, req)
        )

    async def answer(self, plan: Plan, req: RouterRequest) -> AsyncIterator[Delta]:
        """The large model's answer when it is sure of its opening, else the small
        model's; the plan's decision says which before the first delta is yielded."""
        asked = dataclasses.replace(
            req.params, passthrough={**req.params.passthrough, **ASK_LOGPROBS}
        )
        large = self.generator.stream(plan, dataclasses.replace(req, params=asked))
        try:
            async for delta in self._decided(plan, req, large):
                yield delta
        finally:
            await _close(large)  # stopping early closes the stream: the server stops

    async def _decided(
        self, plan: Plan, req: RouterRequest, large: AsyncIterator[Delta]
    ) -> AsyncIterator[Delta]:
        held: list[Delta] = []
        scores: list[float] = []
        finished = True
        async for delta in large:
            held.append(delta)
            scores += top_logprobs(delta.raw or {})
            if delta.finish_reason:
                break
            if len(scores) >= self.settings.tokens:
                finished = False
                break
        if plan.decision.route is Route.LARGE:  # (not when it fell over to the small one)
            opening = Opening(len(scores), min(scores) if scores else None, finished)
            plan.decision.opening = opening.least
            result = judge(opening, self.settings.unsure_below)
            self.metrics.openings.labels(result).inc()
            if result == "unsure":
                await _close(large)
                spent = Usage(prompt_tokens(plan.messages), len(scores))
                self.aftercare.discarded(Route.LARGE, spent)
                why = (
                    f"the large model was unsure of its opening "
                    f"({opening.least:.2f} < {self.settings.unsure_below:.2f})"
                )
                self.generator.switch(plan, req, Route.SMALL, why)
                async for delta in self.generator.stream(plan, req):
                    yield delta
                return
        for delta in held:
            yield _plain(delta)
        async for delta in large:  # the rest, and the usage chunk after the last token
            yield _plain(delta)


async def _close(stream: AsyncIterator[Delta]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _plain(delta: Delta) -> Delta:
    """The delta without the log-probabilities the router asked for itself."""
    if delta.raw is None:
        return delta
    return dataclasses.replace(delta, raw=without_logprobs(delta.raw))
