"""Generation through the chosen model, with one fall-over mechanism for unary and
streamed calls: when the chosen model fails before anything was sent, the plan switches
to the other model (with or without examples, as that model needs) and tries once more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from iccache_sidecar.core.domain import (
    ChatMessage,
    Delta,
    GenerationParams,
    Reply,
    Route,
    RouterRequest,
    Usage,
)
from iccache_sidecar.core.errors import BackendTimeout, BackendUnavailable, ContextTooLong
from iccache_sidecar.core.prompting import with_examples
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.fitting import fit_examples, fits
from iccache_sidecar.requestpath.planning import Plan
from iccache_sidecar.requestpath.ports import Backends, ModelBackend

log = logging.getLogger(__name__)

Call = Callable[[ModelBackend, Sequence[ChatMessage], GenerationParams], AsyncIterator[Delta]]


async def _unary(
    backend: ModelBackend, messages: Sequence[ChatMessage], params: GenerationParams
) -> AsyncIterator[Delta]:
    reply = await backend.complete(messages, params)
    yield Delta(reply.text, reply.finish_reason, reply.usage, raw=reply.raw)


def _streamed(
    backend: ModelBackend, messages: Sequence[ChatMessage], params: GenerationParams
) -> AsyncIterator[Delta]:
    return backend.stream(messages, params)


class Generator:
    def __init__(self, backends: Backends, metrics: Metrics) -> None:
        self.backends = backends
        self.metrics = metrics

    async def complete(self, plan: Plan, req: RouterRequest) -> Reply:
        deltas = [d async for d in self._attempts(plan, req, _unary)]
        done = deltas[-1]
        return Reply(done.text, done.finish_reason or "stop", done.usage or Usage(), done.raw)

    def stream(self, plan: Plan, req: RouterRequest) -> AsyncIterator[Delta]:
        return self._attempts(plan, req, _streamed)

    async def _attempts(self, plan: Plan, req: RouterRequest, call: Call) -> AsyncIterator[Delta]:
        for attempt in (0, 1):
            backend = self.backends[plan.decision.route]
            started = time.monotonic()
            sent = False
            try:
                async for delta in call(backend, plan.messages, req.params):
                    sent = True
                    yield delta
            except (BackendUnavailable, BackendTimeout):
                if sent or attempt == 1 or not self.fall_over(plan, req):
                    raise
                continue
            except ContextTooLong:
                # The small model's context did not hold the prompt with its examples
                # (the router's estimate was low): the large one gets it without them.
                small = plan.decision.route is Route.SMALL
                if sent or attempt == 1 or not small or not self.fall_over(plan, req):
                    raise
                continue
            self.metrics.backend_seconds.labels(backend.route.value).observe(
                time.monotonic() - started
            )
            return

    def fall_over(self, plan: Plan, req: RouterRequest) -> bool:
        """Switch the plan to the other model; False when that one cannot serve it."""
        failed = plan.decision.route
        target = failed.other
        if not fits(self.backends[target].settings, req):
            return False
        self.metrics.fallbacks.labels(failed.value).inc()
        log.warning("%s model failed; falling over to the %s model", failed.value, target.value)
        plan.decision.fell_back = True
        self.switch(plan, req, target, f"fell over from the {failed.value} model")
        return True

    def switch(self, plan: Plan, req: RouterRequest, target: Route, why: str) -> None:
        """Point the plan at ``target`` (with or without examples, as it needs)."""
        d = plan.decision
        d.route = target
        d.reason += f"; {why}"
        d.backend_model = self.backends[target].model
        if target is Route.LARGE:
            d.examples = []
            plan.messages = list(req.messages)
        else:
            d.examples = fit_examples(plan.selected, req, self.backends[Route.SMALL].settings)
            plan.messages = with_examples(d.examples, req.messages)
