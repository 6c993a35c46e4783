"""What a replay run did, per tenant; printed at the end and written for the operator."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from iccache_contract import names

# How a run ended. Only "failed" and "interrupted" make the process exit non-zero.
STATUSES = (
    "completed",
    "dry-run",
    "skipped-load",
    "stopped-load",
    "deadline",
    "interrupted",
    "failed",
)


MESSAGE_LIMIT = 4000


@dataclass
class TenantReport:
    replayed: int = 0  # examples worked on (distilled or expanded)
    improved: int = 0  # answers replaced by a better one
    expanded: int = 0  # companion examples added
    evicted: int = 0
    requests: int = 0  # model requests spent
    tokens: int = 0  # model tokens spent
    budget_exhausted: bool = False


@dataclass
class ReplaySummary:
    started_at: float
    status: str = "completed"
    detail: str = ""
    finished_at: float | None = None
    tenants: dict[str, TenantReport] = field(default_factory=dict)
    planned: list[dict[str, Any]] = field(default_factory=list)  # dry runs: what would happen

    def tenant(self, name: str) -> TenantReport:
        return self.tenants.setdefault(name, TenantReport())

    def totals(self) -> TenantReport:
        total = TenantReport()
        for report in self.tenants.values():
            for name in ("replayed", "improved", "expanded", "evicted", "requests", "tokens"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
        return total

    def to_json(self, plan: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = asdict(self.totals())
        data[names.SUMMARY_LINE] = self.one_line()
        if not plan:
            del data["planned"]
        return data

    def compact(self, limit: int = MESSAGE_LIMIT) -> str:
        """JSON for a container's termination message (Kubernetes keeps 4 KiB): without
        the plan, and without per-tenant figures if they do not fit."""
        data = self.to_json(plan=False)
        text = json.dumps(data, separators=(",", ":"))
        if len(text.encode()) > limit:
            data["tenants"] = {}
            text = json.dumps(data, separators=(",", ":"))
        return text

    def one_line(self) -> str:
        """For a status field: how it ended and the totals."""
        t = self.totals()
        text = (
            f"{self.status}: replayed {t.replayed}, improved {t.improved}, expanded "
            f"{t.expanded}, evicted {t.evicted}; {t.requests} requests, {t.tokens} tokens"
        )
        return f"{text} ({self.detail})" if self.detail else text

    def table(self) -> str:
        rows: list[tuple[str, ...]] = [
            ("tenant", "replayed", "improved", "expanded", "evicted", "requests", "tokens")
        ]
        for name, r in [*sorted(self.tenants.items()), ("TOTAL", self.totals())]:
            rows.append((name, *(str(getattr(r, c)) for c in rows[0][1:])))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        return "\n".join([f"replay {self.one_line()}", *lines])
