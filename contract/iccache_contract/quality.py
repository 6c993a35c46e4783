"""What a router reports of its quality budget at ``names.QUALITY_PATH``, and what the
operator sums over the router pods for ``status.quality``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from pydantic import BaseModel, Field


class ScopeQuality(BaseModel):
    scope: str = Field(description='"*" (every tenant without a budget of its own) or a tenant')
    max_loss: float | None = Field(description="The budget (None: estimate only)")
    samples: int = Field(description="Judged small answers the estimate counts")
    losses: int = Field(description="Of those, found worse than the large model's")
    loss: float = Field(description="losses / samples")
    lower: float = Field(description="Lower end of the confidence interval")
    upper: float = Field(description="Upper end (the budget applies to it)")
    bar_offset: float = Field(description="Added to the routing bar (positive: less offload)")
    holds: bool | None = Field(description="upper <= max_loss (None without a budget)")
    small_answers: int = Field(
        description="Answered by the small model (by every router sharing the window; "
        "without one, by this router since it started)"
    )
    large_answers: int = Field(description="Answered by the large model (as small_answers)")
    window: str | None = Field(
        default=None,
        description="The name of the window the router shares with the other routers of "
        "its cache (reports naming the same window count once); None: its own",
    )


class QualityReport(BaseModel):
    confidence: float
    scopes: list[ScopeQuality]


def z_score(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (0.95 -> 1.96)."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson_interval(losses: int, samples: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of a binomial share; (0, 1) without samples."""
    if samples == 0:
        return 0.0, 1.0
    p = losses / samples
    denominator = 1 + z * z / samples
    centre = (p + z * z / (2 * samples)) / denominator
    half = z * math.sqrt(p * (1 - p) / samples + z * z / (4 * samples * samples)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def distinct_windows(parts: Sequence[ScopeQuality]) -> list[ScopeQuality]:
    """One report per shared window (the one that has seen the most: routers refresh
    their copies a few seconds apart), and every report of a router's own window."""
    own = [p for p in parts if p.window is None]
    shared: dict[str, ScopeQuality] = {}
    for p in parts:
        if p.window is None:
            continue
        best = shared.get(p.window)
        if best is None or _seen(p) > _seen(best):
            shared[p.window] = p
    return own + [shared[w] for w in sorted(shared)]


def _seen(p: ScopeQuality) -> tuple[int, int]:
    return p.samples, p.small_answers + p.large_answers


def pooled(reports: Sequence[QualityReport]) -> list[ScopeQuality]:
    """One estimate per scope over several routers: the judged answers and answer counts
    of their distinct windows summed, the interval computed anew, the highest bar offset
    (the most cautious router's)."""
    if not reports:
        return []
    z = z_score(reports[0].confidence)
    scopes: dict[str, list[ScopeQuality]] = {}
    for r in reports:
        for s in r.scopes:
            scopes.setdefault(s.scope, []).append(s)
    out = []
    for scope, reported in sorted(scopes.items()):
        parts = distinct_windows(reported)
        samples = sum(p.samples for p in parts)
        losses = sum(p.losses for p in parts)
        lower, upper = wilson_interval(losses, samples, z)
        max_loss = next((p.max_loss for p in parts if p.max_loss is not None), None)
        out.append(
            ScopeQuality(
                scope=scope,
                max_loss=max_loss,
                samples=samples,
                losses=losses,
                loss=round(losses / samples, 6) if samples else 0.0,
                lower=round(lower, 6),
                upper=round(upper, 6),
                bar_offset=max(p.bar_offset for p in reported),
                holds=None if max_loss is None else upper <= max_loss,
                small_answers=sum(p.small_answers for p in parts),
                large_answers=sum(p.large_answers for p in parts),
            )
        )
    return out
