"""One replay run: evict, then distil or expand each tenant's highest-gain examples,
within per-tenant budgets, while the system stays quiet.

Every write is atomic (see ``replay.cache``), so stopping at any await (load, deadline,
SIGTERM) leaves the cache consistent; work on an unfinished example is simply dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from iccache_contract.settings import RouterSettings
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.core.domain import ChatMessage, GenerationParams
from iccache_sidecar.core.errors import IccacheError
from iccache_sidecar.core.prompting import prompt_tokens
from iccache_sidecar.embedding import BatchingEmbedder
from iccache_sidecar.replay.budget import Budget, BudgetExhausted
from iccache_sidecar.replay.cache import Ranked, ReplayCache
from iccache_sidecar.replay.pickers import AnswerPicker
from iccache_sidecar.replay.progress import Progress
from iccache_sidecar.replay.rules import (
    Action,
    choose_action,
    parse_paraphrases,
    victims_with_overrides,
)
from iccache_sidecar.replay.summary import ReplaySummary, TenantReport
from iccache_sidecar.storage.layout import ExampleField as F
from iccache_sidecar.storage.loadboard import LoadBoard

PARAPHRASE_PROMPT = """Rewrite the question below in {n} different ways that ask for \
exactly the same thing. Write one question per line, with no numbering and nothing else.

Question: {question}"""

# Fields that restart an example's gain once the replay job has worked on it.
_GAIN_RESET: dict[str, str | float] = {F.GAIN_SUM: 0, F.GAIN_N: 0, F.GAIN: 0}


class Stop(Exception):
    """The run must end now; ``status`` says why (see ``summary.STATUSES``)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ReplayJob:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        cache: ReplayCache,
        board: LoadBoard,
        large: Backend,
        judge: Backend | None,
        embedder: BatchingEmbedder,
        picker: AnswerPicker,
        progress: Progress,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.cfg = settings.replay
        self.cache = cache
        self.board = board
        self.large = large
        self.judge = judge
        self.embedder = embedder
        self.picker = picker
        self.progress = progress
        self._clock = clock
        self._deadline = clock() + self.cfg.deadline_seconds
        self.summary = ReplaySummary(started_at=time.time())

    async def run(self, tenant: str | None = None, dry_run: bool = False) -> ReplaySummary:
        try:
            await self._check_load("skipped-load")
            tenants = [tenant] if tenant else await self.cache.tenants()
            await self._evict(tenants, dry_run)
            plans = {t: await self._plan(t) for t in tenants}
            if dry_run:
                self.summary.status = "dry-run"
                return self.summary
            self.progress.start(sum(len(p) for p in plans.values()), "replay")
            for name in tenants:
                await self._replay_tenant(name, plans[name])
        except Stop as stop:
            self.summary.status, self.summary.detail = stop.status, stop.detail
        except IccacheError as exc:  # Redis or the large model failed
            self.summary.status, self.summary.detail = "failed", str(exc)
        finally:
            self.progress.close()
            self.summary.finished_at = time.time()
        return self.summary

    # -- checks ----------------------------------------------------------------------
    async def _check_load(self, status: str = "stopped-load") -> None:
        load = await self.board.current()
        if load > self.cfg.low_load:
            raise Stop(status, f"load {load:.2f} is above {self.cfg.low_load:.2f}")

    def _check_deadline(self) -> None:
        if self._clock() >= self._deadline:
            raise Stop("deadline", f"wall-time budget of {self.cfg.deadline_seconds} s spent")

    # -- eviction --------------------------------------------------------------------
    async def _evict(self, tenants: list[str], dry_run: bool) -> None:
        wanted = set(tenants)
        metas, total = [], 0
        async for batch in self.cache.metas():
            total += len(batch)
            metas += [m for m in batch if m.tenant in wanted]
        # Capacity counts every example; only the tenants of this run lose any.
        room = self.settings.cache.capacity - (total - len(metas))
        overrides = {
            name: (o.capacity, o.ttl_seconds)
            for name, o in self.settings.tenancy.overrides.items()
            if name in wanted and (o.capacity is not None or o.ttl_seconds is not None)
        }
        victims = victims_with_overrides(
            metas,
            room,
            self.settings.cache.ttl_seconds,
            overrides,
            time.time(),
            self.cfg.idle_tau_seconds,
        )
        for meta in victims:
            if dry_run:
                self.summary.planned.append(
                    {"tenant": meta.tenant, "id": meta.id, "action": "evict"}
                )
            elif await self.cache.delete(meta.id):
                self.summary.tenant(meta.tenant).evicted += 1

    # -- planning --------------------------------------------------------------------
    async def _plan(self, tenant: str) -> list[tuple[Ranked, Action]]:
        plan = []
        for item in await self.cache.ranked_by_gain(tenant, self.cfg.top_examples):
            near = await self.cache.nearest_other(item)
            action = choose_action(near, self.cfg.isolation_similarity)
            plan.append((item, action))
            self.summary.planned.append(
                {
                    "tenant": tenant,
                    "id": item.id,
                    "action": action.value,
                    "gain": round(item.gain, 4),
                    "nearest": None if near is None else round(near, 3),
                    "prompt": item.prompt[:80],
                }
            )
        return plan

    async def _replay_tenant(self, tenant: str, plan: list[tuple[Ranked, Action]]) -> None:
        budget = Budget(self.cfg.budget_requests, self.cfg.budget_tokens)
        report = self.summary.tenant(tenant)
        try:
            for item, action in plan:
                if budget.exhausted:
                    raise BudgetExhausted("budget spent")
                result = await (
                    self._distil(item, budget, report)
                    if action is Action.DISTIL
                    else self._expand(item, budget, report)
                )
                report.replayed += 1
                self.progress.step(
                    tenant=tenant,
                    example=item.id[:8],
                    action=action.value,
                    result=result,
                    requests=budget.used_requests,
                )
        except BudgetExhausted:
            report.budget_exhausted = True
        finally:
            report.requests, report.tokens = budget.used_requests, budget.used_tokens

    # -- model calls -----------------------------------------------------------------
    async def _call(
        self,
        backend: Backend,
        messages: list[ChatMessage],
        max_tokens: int,
        temperature: float | None,
        budget: Budget,
    ) -> str:
        """One model call, after the deadline and load checks, within the budget."""
        self._check_deadline()
        await self._check_load()
        allowed = budget.reserve(messages, max_tokens)
        usage = None
        try:
            reply = await backend.complete(
                messages, GenerationParams(max_tokens=allowed, temperature=temperature)
            )
            usage = reply.usage
        finally:
            budget.charge(usage, messages, allowed)
        return reply.text

    # -- distil ----------------------------------------------------------------------
    async def _distil(self, item: Ranked, budget: Budget, report: TenantReport) -> str:
        question = [ChatMessage("user", item.prompt)]
        samples = []
        for _ in range(self.cfg.samples):
            answer = await self._call(
                self.large, question, self.cfg.answer_max_tokens, self.cfg.temperature, budget
            )
            if answer.strip():
                samples.append(answer.strip())
        answers = [item.response, *samples]

        async def ask(messages: list[ChatMessage], max_tokens: int) -> str:
            assert self.judge is not None, "a judge picker needs a judge backend"
            return await self._call(self.judge, messages, max_tokens, 0.0, budget)

        pick = await self.picker.pick(item.prompt, answers, ask)
        fields: dict[str, str | float] = {
            **_GAIN_RESET,
            F.QUALITY: round(pick.quality, 4),
            F.REPLAYED_AT: time.time(),
        }
        if pick.index != 0:
            better = answers[pick.index]
            fields |= {
                F.RESPONSE: better,
                F.MODEL: self.large.model,
                F.RATED: 0,
                F.HELPED: 0,
                F.TOKENS: prompt_tokens([question[0], ChatMessage("assistant", better)]),
            }
        if not await self.cache.update(item.id, fields):
            return "gone"
        if pick.index != 0:
            report.improved += 1
            return "improved"
        return "kept"

    # -- expand ----------------------------------------------------------------------
    async def _expand(self, item: Ranked, budget: Budget, report: TenantReport) -> str:
        cfg, cache_cfg = self.cfg, self.settings.cache
        request = PARAPHRASE_PROMPT.format(n=cfg.paraphrases, question=item.prompt)
        reply = await self._call(
            self.large, [ChatMessage("user", request)], 48 * cfg.paraphrases, 0.7, budget
        )
        lines = parse_paraphrases(reply, item.prompt, cfg.paraphrases)
        vectors = await asyncio.gather(*(self.embedder.embed(line) for line in lines))
        accepted: list[tuple[str, np.ndarray]] = []
        for line, vector in zip(lines, vectors, strict=True):
            to_origin = float(vector @ item.vector)
            if not cfg.min_paraphrase_similarity <= to_origin < cache_cfg.dedupe_similarity:
                continue  # not the same question, or the same words
            if any(float(vector @ v) >= cache_cfg.dedupe_similarity for _, v in accepted):
                continue
            nearest = await self.cache.store.search(item.tenant, vector, 1)
            if nearest and nearest[0].similarity >= cache_cfg.dedupe_similarity:
                continue
            accepted.append((line, vector))
        added = 0
        store = self.cache.store
        override = self.settings.tenancy.overrides.get(item.tenant)
        for line, vector in accepted:
            if await store.count() >= cache_cfg.capacity:
                break
            own_capacity = override.capacity if override is not None else None
            if own_capacity is not None and await store.count_of(item.tenant) >= own_capacity:
                break
            question = [ChatMessage("user", line)]
            answer = (
                await self._call(self.large, question, cfg.answer_max_tokens, 0.0, budget)
            ).strip()
            exchange = [question[0], ChatMessage("assistant", answer)]
            if not answer or prompt_tokens(exchange) > cache_cfg.max_example_tokens:
                continue
            companion = await store.add(
                item.tenant,
                line,
                answer,
                vector,
                self.large.model,
                extra={F.SOURCE: "replay-expand", F.PARENT: item.id},
                ttl_seconds=override.ttl_seconds if override else None,
            )
            # Checked after the write: a forget of the parent or its tenant meanwhile
            # takes the companion too.
            began = self.summary.started_at
            if not await store.get(item.id) or await store.forgotten(item.tenant, None, began):
                await store.delete(companion)
                continue
            added += 1
        await self.cache.update(item.id, {**_GAIN_RESET, F.REPLAYED_AT: time.time()})
        report.expanded += added
        return f"expanded+{added}"
