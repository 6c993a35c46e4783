"""What a caller may learn of a decision.

The full decision says whether someone in the caller's scope asked the same question
before (an exact hit, the nearest similarity, the examples' ids, the policy's reason).
Unless ``server.decision_details`` is ``full``, callers get a view without those: the
request id (for feedback), the model that answered, and what was down. An exact hit or
a reused answer is shown as the large model's answer, which it is.
"""

from __future__ import annotations

from dataclasses import replace

from iccache_sidecar.core.domain import Decision, Route


def visible(d: Decision, details: str) -> Decision:
    """``d`` as a caller sees it under ``details`` ("minimal" or "full")."""
    if details == "full":
        return d
    return replace(
        d,
        route=Route.LARGE if d.exact_hit else d.route,
        policy="",
        reason="",
        examples=[],
        features=None,
        exact_hit=False,
        predicted_quality=None,
        margin=None,
        held=False,
        opening=None,
    )
