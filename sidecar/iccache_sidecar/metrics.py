"""Prometheus metrics of one router process, in a registry of its own."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set for a pod's workers (see workers.py)

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


def merged_registry() -> CollectorRegistry | None:
    """With several workers: a registry that collects every worker's metrics from the
    shared folder; otherwise None (one process: its own registry)."""
    if METRICS_DIR_ENV not in os.environ:
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


# Tenants named in metric labels, per process: a gateway can name any number of tenants,
# and every label value is a series Prometheus keeps. Later ones are counted as "other".
MAX_TENANT_LABELS = 100
OTHER_TENANTS = "other"


class Metrics:
    """Gauges say how several workers' values combine (``multiprocess_mode``); it only
    matters when they write to a shared folder."""

    def __init__(self) -> None:
        self._tenants: set[str] = set()
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "iccache_requests",
            "Requests served, by route and tenant",
            ["route", "tenant"],
            registry=r,
        )
        self.errors = Counter(
            "iccache_request_errors", "Requests that failed, by kind", ["kind"], registry=r
        )
        self.offload_ratio = Gauge(
            "iccache_offload_ratio",
            "Share of model-served requests answered by the small model",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.examples = Histogram(
            "iccache_examples_per_request",
            "In-context examples prepended",
            buckets=(0, 1, 2, 3, 4, 6, 8, 16),
            registry=r,
        )
        self.similarity = Histogram(
            "iccache_max_similarity",
            "Best candidate similarity per request",
            buckets=(0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "iccache_stage_seconds",
            "Router time by stage (embed, retrieve, select, route)",
            ["stage"],
            buckets=_FAST,
            registry=r,
        )
        self.backend_seconds = Histogram(
            "iccache_backend_seconds",
            "Backend call latency",
            ["backend"],
            buckets=_SLOW,
            registry=r,
        )
        self.backend_in_flight = Gauge(
            "iccache_backend_in_flight",
            "Backend requests in flight",
            ["backend"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.tokens = Counter(
            "iccache_tokens", "Tokens processed by backend", ["backend", "kind"], registry=r
        )
        self.cost = Counter(
            "iccache_cost", "Estimated cost spent (relative units)", ["backend"], registry=r
        )
        self.cost_saved = Counter(
            "iccache_cost_saved",
            "Estimated cost saved against all-large serving",
            registry=r,
        )
        self.exact_hits = Counter("iccache_exact_hits", "Answers served from the cache", registry=r)
        self.cache_examples = Gauge(
            "iccache_cache_examples",
            "Examples in the cache (all tenants)",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.learned = Gauge(
            "iccache_learned_outcomes",
            "Outcomes the routing policy has learned from, all replicas' (shared in Redis), "
            "by arm; with several workers one series per process (pid)",
            ["arm"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.admissions = Counter(
            "iccache_admissions",
            "Exchanges offered to the cache, by result",
            ["result"],
            registry=r,
        )
        self.ineligible = Counter(
            "iccache_cache_ineligible",
            "Requests the cache could not serve faithfully, by reason",
            ["reason"],
            registry=r,
        )
        self.degraded = Counter(
            "iccache_degraded",
            "Requests served without a failed dependency",
            ["dependency"],
            registry=r,
        )
        self.fallbacks = Counter(
            "iccache_fallbacks",
            "Requests moved to the other backend after a failure",
            ["from_backend"],
            registry=r,
        )
        self.rejected = Counter(
            "iccache_rejected", "Requests refused because the router was full", registry=r
        )
        self.feedback = Counter(
            "iccache_feedback", "Quality signals received, by source", ["source"], registry=r
        )
        self.feedback_repeated = Counter(
            "iccache_feedback_repeated",
            "Quality signals on a request the same source had already judged (not learned "
            "from again), by source",
            ["source"],
            registry=r,
        )
        self.judge_verdicts = Counter(
            "iccache_judge_verdicts",
            "Judge verdicts on sampled small-model answers",
            ["verdict"],
            registry=r,
        )
        self.dropped_tasks = Counter(
            "iccache_dropped_background_tasks",
            "After-response work dropped under overload",
            registry=r,
        )
        quality = ["scope"]  # "*" (overall) or a tenant with a budget of its own
        self.quality_outcomes = Counter(
            "iccache_quality_outcomes",
            "Judged small-model answers (shadow comparisons, feedback), by result",
            [*quality, "result"],
            registry=r,
        )
        self.quality_loss = Gauge(
            "iccache_quality_loss",
            "Estimated share of small answers worse than the large model's, at the current bar",
            quality,
            multiprocess_mode="liveall",
            registry=r,
        )
        self.quality_loss_upper = Gauge(
            "iccache_quality_loss_upper",
            "Upper confidence bound of that estimate (the budget applies to it)",
            quality,
            multiprocess_mode="liveall",
            registry=r,
        )
        self.quality_samples = Gauge(
            "iccache_quality_samples",
            "Judged answers behind the estimate",
            quality,
            multiprocess_mode="liveall",
            registry=r,
        )
        self.quality_max_loss = Gauge(
            "iccache_quality_max_loss",
            "The quality budget (routing.quality.max_loss) of the scope",
            quality,
            multiprocess_mode="liveall",
            registry=r,
        )
        self.quality_bar_offset = Gauge(
            "iccache_quality_bar_offset",
            "Added to the routing bar by the quality budget (positive: less offload)",
            quality,
            multiprocess_mode="liveall",
            registry=r,
        )
        self.quality_held = Counter(
            "iccache_quality_unproven_held",
            "Requests the policy would have offloaded, kept on the large model because the "
            "scope's budget has too few judged answers to be shown yet (unproven_share)",
            quality,
            registry=r,
        )
        self.shadow = Counter(
            "iccache_shadow_comparisons",
            "Shadow comparisons of small answers against the large model, by result",
            ["result"],
            registry=r,
        )
        self.probes = Counter(
            "iccache_quality_probes",
            "Requests held to the large model also answered by the idle small model and "
            "compared with the large answer (probe_rate), by result",
            ["result"],
            registry=r,
        )
        self.verifications = Counter(
            "iccache_verifications",
            "Small answers checked by the large model's token log-probabilities, by result "
            "(pass, fail, skipped: the large model could not score it)",
            ["result"],
            registry=r,
        )
        self.verifier_seconds = Histogram(
            "iccache_verifier_seconds",
            "Time of one verification (a prefill of prompt + answer on the large model)",
            buckets=_SLOW,
            registry=r,
        )
        self.verifier_threshold = Gauge(
            "iccache_verifier_threshold",
            "The verifier's pass threshold on its statistic (learned from outcomes)",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.openings = Counter(
            "iccache_openings",
            "Large answers decided on their opening, by result (sure: kept; unsure: handed "
            "to the small model; finished: the answer fit in its opening; unscored: the "
            "model sent no log-probabilities)",
            ["result"],
            registry=r,
        )
        self._small = 0
        self._large = 0
        self.exact_served = 0

    def start_at_zero(
        self,
        *,
        error_kinds: Iterable[str],
        backends: Iterable[str],
        dependencies: Iterable[str],
        stages: Iterable[str],
        tenants: Iterable[str],
    ) -> None:
        """Export the labelled series a dashboard or an alert reads at 0 from the start.
        A series that was never touched does not exist: its rate is "no data" instead of
        0, an alert on it can never fire or resolve, and the first increment after it
        appears is lost to ``rate`` (there is no earlier sample to compare with)."""
        backends = list(backends)
        for kind in error_kinds:
            self.errors.labels(kind)
        for dependency in dependencies:
            self.degraded.labels(dependency)
        for result in ("loss", "no_loss", "skipped"):
            self.shadow.labels(result)
        for stage in stages:
            self.stage_seconds.labels(stage)
        for backend in backends:
            self.fallbacks.labels(backend)
            self.backend_seconds.labels(backend)
            self.cost.labels(backend)
            for kind in ("prompt", "completion"):
                self.tokens.labels(backend, kind)
        for tenant in tenants:
            for route in (*backends, "exact"):
                self.requests.labels(route, self.tenant_label(tenant))

    def tenant_label(self, tenant: str) -> str:
        """The tenant as a label value: itself for the first ``MAX_TENANT_LABELS``
        tenants seen, then ``other``."""
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) >= MAX_TENANT_LABELS:
            return OTHER_TENANTS
        self._tenants.add(tenant)
        return tenant

    def count_exact(self) -> None:
        self.exact_served += 1
        self.exact_hits.inc()

    def count_route(self, route: str) -> None:
        if route == "small":
            self._small += 1
        else:
            self._large += 1
        self.offload_ratio.set(self._small / (self._small + self._large))

    @property
    def routed(self) -> tuple[int, int]:
        return self._small, self._large
