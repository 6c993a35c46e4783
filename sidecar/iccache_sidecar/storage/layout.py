"""The Redis layout of iccache, declared once: key names, the fields of an example, the
vector index over them, and how tags are escaped. Every reader and writer (the router,
the replay job, the load board, tests) goes through it.

One InContextCache owns one key prefix and one index name (the operator sets both):

- ``<prefix>:ex:<id>``: a hash per example (fields in :class:`ExampleField`), covered by
  the index ``<index_name>`` with the tenant as a case-sensitive TAG;
- ``<prefix>:exact:<tenant>:<sha256 of the normalised prompt>``: exact-match key, its
  value the example id;
- ``<prefix>:req:<request id>``: what feedback needs of a past decision (JSON, with TTL);
- ``<prefix>:req:<request id>:verdicts``: a hash of what verdicts on that request were
  already counted (``budget``, ``learn-<source>``; with TTL);
- ``<prefix>:bandit`` and ``<prefix>:bandit:large``: the bandit's pooled statistics per
  arm; ``<prefix>:bandit:t:<tenant>:<arm>``: a tenant's own;
- ``<prefix>:load``: each router replica's recent peak load (a hash field per replica);
- ``<prefix>:quality:<total|steering|answers|sources>:<scope>``: the quality budget's
  count of judged answers (also their sequence numbers), the bar's offset (a hash), the
  answers per model (a hash) and the tenants heard from (a sorted set, by the sequence
  number of their last outcome), per scope ("*" or a tenant);
  ``<prefix>:quality:from:<sha256 of the tenant, 16 hex>:<scope>``: that tenant's last
  judged answers in the scope (a list, newest first; the window pools them);
  ``<prefix>:quality:outcomes:<scope>``: the one list of an earlier version (read, not
  written);
- ``<prefix>:rate:<tenant>:<requests|tokens>:<minute>``: per-tenant rate counters;
- ``<prefix>:stored:<request id>``: the example a request's answer became (for forget);
- ``<prefix>:forgot:req:<request id>`` and ``<prefix>:forgot:tenant:<tenant>``: tombstones
  of a forget (the tenant's holds its time), for an hour: an answer admitted after a
  forget that its request (or replay run) began before is deleted again;
- ``<prefix>:replay:last``: the last replay run's summary (JSON);
- ``<prefix>:resp:<tenant>:<response id>``: a stored Responses API response and the
  conversation it ended (JSON, with TTL), for ``previous_response_id``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.commands.search.field import Field, NumericField, TagField, TextField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType

from iccache_sidecar.core.domain import Route
from iccache_sidecar.core.prompting import normalise_prompt


class ExampleField(StrEnum):
    """The fields of an example's hash."""

    TENANT = "tenant"
    PROMPT = "prompt"
    RESPONSE = "response"
    MODEL = "model"
    EMBEDDING = "embedding"  # float32 bytes, unit length
    CREATED_AT = "created_at"  # unix seconds
    TOKENS = "tokens"  # estimated tokens of prompt + response
    USES = "uses"  # times it was selected
    RATED = "rated"  # total weight of outcomes seen while it was used
    HELPED = "helped"  # sum of those outcomes' rewards
    GAIN = "gain"  # time-decayed average replay gain (indexed, sortable)
    GAIN_SUM = "gain_sum"
    GAIN_N = "gain_n"
    GAIN_AT = "gain_at"  # when the gain was last updated (also: last use)
    QUALITY = "quality"  # score of the answer when the replay job last distilled it
    REPLAYED_AT = "replayed_at"  # when the replay job last worked on it
    SOURCE = "source"  # "replay-expand" for companions the replay job created
    PARENT = "parent"  # the example a companion was created from
    EXACT_KEY = "exact_key"  # the name of its exact-match key (absent in older examples)
    REQUEST_ID = "request_id"  # the request whose answer it is (router admissions)
    SCOPE = "scope"  # whom it may serve within its tenant (absent: anyone; see example_scope)


DISTANCE = "distance"  # the KNN score's alias in search results

_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")


def escape_tag(value: str) -> str:
    """A value made safe inside ``@field:{...}`` of a query."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class RedisLayout:
    index_name: str
    prefix: str

    # -- keys ---------------------------------------------------------------------------
    @property
    def example_prefix(self) -> str:
        return f"{self.prefix}:ex:"

    @property
    def example_pattern(self) -> str:
        return f"{self.example_prefix}*"

    def example_key(self, example_id: str) -> str:
        return f"{self.example_prefix}{example_id}"

    def example_id(self, key: str | bytes) -> str:
        return as_text(key).removeprefix(self.example_prefix)

    def exact_key(self, tenant: str, prompt: str) -> str:
        digest = hashlib.sha256(normalise_prompt(prompt).encode()).hexdigest()
        return f"{self.prefix}:exact:{tenant}:{digest}"

    @property
    def exact_pattern(self) -> str:
        return f"{self.prefix}:exact:*"

    def decision_key(self, request_id: str) -> str:
        return f"{self.prefix}:req:{request_id}"

    def verdicts_key(self, request_id: str) -> str:
        return f"{self.prefix}:req:{request_id}:verdicts"

    def bandit_key(self, arm: Route, tenant: str = "") -> str:
        # The pool's small arm keeps the key it had when it was the only one, so an
        # upgrade keeps what routers learned.
        if tenant:
            return f"{self.prefix}:bandit:t:{tenant}:{arm.value}"
        base = f"{self.prefix}:bandit"
        return base if arm is Route.SMALL else f"{base}:{arm.value}"

    def rate_key(self, tenant: str, kind: str, window: int) -> str:
        return f"{self.prefix}:rate:{tenant}:{kind}:{window}"

    def stored_key(self, request_id: str) -> str:
        return f"{self.prefix}:stored:{request_id}"

    def forgotten_request_key(self, request_id: str) -> str:
        return f"{self.prefix}:forgot:req:{request_id}"

    def forgotten_tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}:forgot:tenant:{tenant}"

    def response_key(self, tenant: str, response_id: str) -> str:
        return f"{self.prefix}:resp:{tenant}:{response_id}"

    def responses_pattern(self, tenant: str) -> str:
        return f"{self.prefix}:resp:{tenant}:*"

    @property
    def learning_patterns(self) -> list[str]:
        """The keys of what routers learned (the bandit's statistics, the quality
        budget's state, saved decisions), as SCAN patterns: the examples are not here."""
        return [f"{self.prefix}:bandit*", f"{self.quality_prefix}:*", f"{self.prefix}:req:*"]

    @property
    def quality_prefix(self) -> str:
        return f"{self.prefix}:quality"

    def quality_key(self, kind: str, scope: str) -> str:
        return f"{self.quality_prefix}:{kind}:{scope}"

    def quality_source_key(self, scope: str, source: str) -> str:
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        return f"{self.quality_prefix}:from:{digest}:{scope}"

    @property
    def load_key(self) -> str:
        return f"{self.prefix}:load"

    @property
    def replay_summary_key(self) -> str:
        return f"{self.prefix}:replay:last"

    # -- the index ----------------------------------------------------------------------
    def index_schema(self, dimensions: int) -> list[Field]:
        return [
            TagField(ExampleField.TENANT, case_sensitive=True),
            *added_fields(),
            TagField(ExampleField.MODEL),
            TextField(ExampleField.PROMPT),
            NumericField(ExampleField.CREATED_AT, sortable=True),
            NumericField(ExampleField.GAIN, sortable=True),
            VectorField(
                ExampleField.EMBEDDING,
                "HNSW",
                {"TYPE": "FLOAT32", "DIM": dimensions, "DISTANCE_METRIC": "COSINE"},
            ),
        ]

    def index_definition(self) -> IndexDefinition:
        return IndexDefinition(prefix=[self.example_prefix], index_type=IndexType.HASH)

    @staticmethod
    def tenant_filter(tenant: str) -> str:
        return f"@{ExampleField.TENANT}:{{{escape_tag(tenant)}}}"

    @staticmethod
    def scoped_filter(tenant: str, scope: str | None) -> str:
        """A tenant's examples of one scope: those with no scope (lone questions, shared
        tenant-wide) when ``scope`` is None."""
        tenant_part = RedisLayout.tenant_filter(tenant)
        if scope is None:
            return f"{tenant_part} ismissing(@{ExampleField.SCOPE})"
        return f"{tenant_part} @{ExampleField.SCOPE}:{{{escape_tag(scope)}}}"


def added_fields() -> list[Field]:
    """Fields indexed since the first release: an older index gains them at start.
    The scope TAG (examples without one are found with ``ismissing``) and the parent of
    a replay companion (forget finds companions by it)."""
    return [
        TagField(ExampleField.SCOPE, case_sensitive=True, index_missing=True),
        TagField(ExampleField.PARENT, case_sensitive=True),
    ]
