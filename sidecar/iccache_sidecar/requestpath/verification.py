"""Small answers checked by the large model (``verifier``): the pass rule, its threshold
learned from outcomes, and what a check teaches.

A check is one prefill on the large model (:mod:`iccache_sidecar.backends.verifier`).
Its result is used three ways, each switched in the settings:

- ``gate`` (the routing mode *verify*): a unary small answer is checked before it is
  returned, and one that fails is replaced by the large model's answer;
- ``reward``: every checked small answer teaches the routing policy and its examples
  (pass 1, fail 0), so a new router learns from every small answer it checks instead of
  the few with user feedback;
- ``comparator``: the quality budget's shadow comparisons and probes count a failed
  check as a loss, a prefill instead of a whole large answer.

The threshold starts at ``verifier.threshold``; with ``learn``, user feedback on checked
small answers (the true outcome) moves it to the lowest value at which the drafts that
pass are shown to lose at most ``routing.quality.max_loss`` (or 5% without a budget).
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from iccache_contract.settings import RouterSettings
from iccache_sidecar.core.domain import ChatMessage, Route, RouterRequest
from iccache_sidecar.core.errors import DependencyDown, UnknownRequest
from iccache_sidecar.core.verification import Outcome, learn_threshold, passes
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.feedback import Feedback
from iccache_sidecar.requestpath.planning import Plan
from iccache_sidecar.requestpath.ports import Verifier

log = logging.getLogger(__name__)

DEFAULT_MAX_LOSS = 0.05  # the learned threshold's target without a quality budget
REMEMBERED = 10_000  # checked requests whose feedback can still teach the threshold
OUTCOMES = 5_000  # outcomes the threshold is learned from


@dataclass(frozen=True)
class Checked:
    passed: bool
    value: float | None  # the statistic (None: an empty draft)
    threshold: float


class DraftCheck:
    def __init__(self, settings: RouterSettings, verifier: Verifier, metrics: Metrics) -> None:
        self.settings = settings.verifier
        self.max_loss = settings.routing.quality.max_loss or DEFAULT_MAX_LOSS
        self.confidence = settings.routing.quality.confidence
        self.verifier = verifier
        self.metrics = metrics
        self.threshold = self.settings.threshold
        self._values: OrderedDict[str, float] = OrderedDict()
        self._outcomes: deque[Outcome] = deque(maxlen=OUTCOMES)
        metrics.verifier_threshold.set(self.threshold)

    @property
    def available(self) -> bool:
        return self.verifier.protocol != "none"

    @property
    def gates(self) -> bool:
        return self.available and self.settings.gate

    @property
    def rewards(self) -> bool:
        return self.available and self.settings.reward

    @property
    def compares(self) -> bool:
        return self.available and self.settings.comparator

    async def check(
        self, messages: Sequence[ChatMessage], answer: str, request_id: str = ""
    ) -> Checked | None:
        """The draft ``answer`` to ``messages`` (the request without examples: the large
        model reads what it would have answered) against the threshold; None when the
        large model could not score it (the caller then decides as without a verifier)."""
        done = await self.verifier.verify(messages, answer)
        if done is None:
            self.metrics.verifications.labels("skipped").inc()
            return None
        self.metrics.verifier_seconds.observe(done.seconds)
        value = done.score.statistic(self.settings.statistic) if done.score else None
        ok = passes(done.score, self.settings.statistic, self.threshold, self.settings.unsure_below)
        self.metrics.verifications.labels("pass" if ok else "fail").inc()
        if request_id and value is not None:
            self._values[request_id] = value
            while len(self._values) > REMEMBERED:
                self._values.popitem(last=False)
        return Checked(ok, value, self.threshold)

    def feedback(self, request_id: str, score: float, loss_below: float) -> None:
        """A user's score on a checked small answer: an outcome to learn the threshold."""
        value = self._values.pop(request_id, None)
        if value is None or not self.settings.learn:
            return
        self._outcomes.append(Outcome(value, lost=score < loss_below))
        learned = learn_threshold(
            self._outcomes, self.max_loss, self.confidence, self.settings.min_samples
        )
        if learned is not None and learned != self.threshold:
            log.info(
                "verifier threshold %.3f -> %.3f (%d outcomes)",
                self.threshold,
                learned,
                len(self._outcomes),
            )
            self.threshold = learned
            self.metrics.verifier_threshold.set(learned)

    async def check_served(
        self, feedback: Feedback, plan: Plan, req: RouterRequest, text: str
    ) -> None:
        """A served small answer, checked off the response path."""
        checked = await self.check(req.messages, text, plan.decision.request_id)
        if checked is not None:
            plan.decision.verified = checked.passed
            await self.teach(feedback, plan, checked.passed)

    async def teach(self, feedback: Feedback, plan: Plan, passed: bool) -> None:
        """A check's outcome teaches the policy and the examples (``reward``) and counts
        in the quality budget (``comparator``), as the small arm's: through the served
        answer's record, or for a draft that failed and was replaced, as an outcome of
        its own."""
        d, score = plan.decision, 1.0 if passed else 0.0
        budget, teach = self.compares, self.rewards
        try:
            if d.route is Route.SMALL:
                with contextlib.suppress(UnknownRequest):
                    await feedback.apply(
                        d.request_id, score, source="verifier", budget=budget, teach=teach
                    )
            else:
                await feedback.small_outcome(
                    d, plan.draft_examples, score, source="verifier", budget=budget, teach=teach
                )
        except DependencyDown as exc:
            log.warning("verifier outcome not learned, redis failed: %s", exc)
