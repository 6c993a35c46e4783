"""Failed attempts at a secret, counted per caller: after ``max_failures`` within
``window`` seconds the caller is locked out for ``lockout`` seconds, so an admin key
cannot be guessed at request speed. Pure (the caller passes the clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_TRACKED = 10_000  # callers remembered at once; the oldest are forgotten first


@dataclass
class FailureThrottle:
    max_failures: int = 5
    window: float = 60.0
    lockout: float = 300.0
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def retry_after(self, who: str, now: float) -> float | None:
        """Seconds ``who`` must wait before trying again, or None."""
        until = self._locked_until.get(who)
        if until is None:
            return None
        if now >= until:
            del self._locked_until[who]
            return None
        return until - now

    def failed(self, who: str, now: float) -> None:
        recent = [t for t in self._failures.get(who, []) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.max_failures:
            self._locked_until[who] = now + self.lockout
            recent = []
        self._failures[who] = recent
        for table in (self._failures, self._locked_until):
            while len(table) > MAX_TRACKED:
                del table[next(iter(table))]

    def succeeded(self, who: str) -> None:
        self._failures.pop(who, None)
