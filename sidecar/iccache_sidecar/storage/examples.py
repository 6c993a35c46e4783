"""The example cache in Redis: a vector index of large-model answers, per tenant.

Where and how everything is kept is declared in :mod:`.layout`; this module is the
router's reads and writes of it. Every query is filtered to one tenant.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import redis.asyncio as aioredis
from redis.commands.search.field import Field
from redis.commands.search.query import Query
from redis.exceptions import RedisError, ResponseError

from iccache_sidecar.core.domain import (
    Candidate,
    Route,
    StoredExample,
    Vector,
    estimate_tokens,
)
from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.storage.layout import (
    DISTANCE,
    ExampleField,
    RedisLayout,
    added_fields,
    as_text,
    escape_tag,
)
from iccache_sidecar.storage.redis_io import redis_call

F = ExampleField
TOMBSTONE_SECONDS = 3600  # longer than any admission or replay step takes

# Time-decayed average of the replay gain: S and N decay with time constant tau, then
# gain = S / N. Atomic in Redis so that replicas can update the same example.
_RECORD_GAIN = f"""
local now = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local g = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local at = tonumber(redis.call('HGET', key, '{F.GAIN_AT}') or now)
    local decay = math.exp(-math.max(0, now - at) / tau)
    local s = tonumber(redis.call('HGET', key, '{F.GAIN_SUM}') or 0) * decay + g
    local n = tonumber(redis.call('HGET', key, '{F.GAIN_N}') or 0) * decay + 1
    redis.call('HSET', key, '{F.GAIN_SUM}', s, '{F.GAIN_N}', n, '{F.GAIN}', s / n,
               '{F.GAIN_AT}', now)
    redis.call('HINCRBY', key, '{F.USES}', 1)
  end
end
return #KEYS
"""

# Delete an example, and the exact-match and request keys that still point at it.
_DELETE = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return redis.call('DEL', KEYS[1])
"""

_SEARCH_FIELDS = (
    DISTANCE,
    F.TENANT,
    F.PROMPT,
    F.RESPONSE,
    F.EMBEDDING,
    F.RATED,
    F.HELPED,
    F.TOKENS,
)
_STORED_FIELDS = [F.TENANT, F.PROMPT, F.RESPONSE, F.MODEL]


def example_fields(
    tenant: str, prompt: str, response: str, vector: Vector, model: str, now: float
) -> dict[str, str | bytes | float | int]:
    """The hash of a new example."""
    return {
        F.TENANT: tenant,
        F.PROMPT: prompt,
        F.RESPONSE: response,
        F.MODEL: model,
        F.EMBEDDING: np.asarray(vector, dtype=np.float32).tobytes(),
        F.CREATED_AT: now,
        F.TOKENS: estimate_tokens(prompt) + estimate_tokens(response),
        F.USES: 0,
        F.RATED: 0,
        F.HELPED: 0,
        F.GAIN: 0,
    }


class ExampleStore:
    def __init__(
        self,
        client: aioredis.Redis,
        layout: RedisLayout,
        *,
        ttl_seconds: int = 0,
        gain_tau_seconds: float = 86_400.0,
        hybrid_policy: str = "auto",
    ) -> None:
        self._r = client
        self._policy = {
            "auto": "",
            "batches": " HYBRID_POLICY BATCHES",
            "adhoc": " HYBRID_POLICY ADHOC_BF",
        }[hybrid_policy]
        self.layout = layout
        self.ttl = ttl_seconds
        self.gain_tau = gain_tau_seconds
        self._record_gain = client.register_script(_RECORD_GAIN)
        self._delete = client.register_script(_DELETE)
        self._ft = client.ft(layout.index_name)

    @property
    def client(self) -> aioredis.Redis:
        return self._r

    # -- index ------------------------------------------------------------------------
    async def ensure_index(self, dimensions: int) -> int:
        """Create the vector index if missing; refuse one built for other dimensions.
        Returns the examples in it (0 for a new one), from the same FT.INFO."""
        ft = self._ft
        try:
            info = await ft.info()
        except ResponseError:
            info = None
        except RedisError as exc:
            raise DependencyDown(f"redis: {exc}") from exc
        if info is not None:
            found = _index_dimensions(info)
            if found is not None and found != dimensions:
                raise ValueError(
                    f"index {self.layout.index_name!r} holds {found}-dimension vectors but "
                    f"the embedder makes {dimensions}; use another index name or drop it"
                )
            missing = [f for f in added_fields() if f.name not in _index_fields(info)]
            if missing:  # made by an older release: index the new fields too
                await self._add_fields(missing)
            return _num_docs(info)
        schema = self.layout.index_schema(dimensions)
        definition = self.layout.index_definition()
        await redis_call(lambda: ft.create_index(schema, definition=definition))
        return 0

    async def _add_fields(self, fields: list[Field]) -> None:
        """An index made by an older release lacks these fields (its examples lack a
        scope, so they stay tenant-wide). Another replica may add them first."""
        for field in fields:
            try:
                await self._ft.alter_schema_add([field])
            except ResponseError as exc:
                if "duplicate" not in str(exc).lower():
                    raise DependencyDown(f"redis: adding field {field.name}: {exc}") from exc
            except RedisError as exc:
                raise DependencyDown(f"redis: {exc}") from exc

    # -- forgetting -------------------------------------------------------------------
    async def companions_of(self, example_id: str) -> list[str]:
        """The replay job's companions made from an example."""
        query = (
            Query(f"@{F.PARENT}:{{{escape_tag(example_id)}}}")
            .no_content()
            .paging(0, 10_000)
            .dialect(2)
        )
        result = await redis_call(lambda: self._ft.search(query))
        return [self.layout.example_id(doc.id) for doc in result.docs]

    async def mark_forgotten(
        self, tenant: str | None, request_id: str | None, now: float | None = None
    ) -> None:
        """Leave a tombstone for an hour, before deleting: see :meth:`forgotten`."""
        at = time.time() if now is None else now
        if tenant is not None:
            key = self.layout.forgotten_tenant_key(tenant)
            await redis_call(lambda: self._r.set(key, at, ex=TOMBSTONE_SECONDS))
        if request_id is not None:
            key = self.layout.forgotten_request_key(request_id)
            await redis_call(lambda: self._r.set(key, at, ex=TOMBSTONE_SECONDS))

    async def forgotten(self, tenant: str, request_id: str | None, began: float) -> bool:
        """Whether what a request (or a replay run) that began at ``began`` stores must
        go: its tenant was forgotten after it began, or the request itself was. Checked
        after the write, so a forget that races the write removes it either way: the
        forget's scan sees a write that came before its tombstone, and a write that
        came after sees the tombstone."""
        keys = [self.layout.forgotten_tenant_key(tenant)]
        if request_id is not None:
            keys.append(self.layout.forgotten_request_key(request_id))
        values = await redis_call(lambda: self._r.mget(keys))
        tenant_at = values[0]
        if tenant_at is not None and float(as_text(tenant_at)) >= began:
            return True
        return len(values) > 1 and values[1] is not None

    async def count(self) -> int:
        return _num_docs(await redis_call(lambda: self._ft.info()))

    async def ping(self) -> bool:
        return bool(await redis_call(lambda: self._r.ping()))

    # -- read -------------------------------------------------------------------------
    async def search(
        self, tenant: str, vector: Vector, k: int, scope: str | None = None
    ) -> list[Candidate]:
        """The ``k`` nearest examples of ``tenant`` (and only of ``tenant``) in ``scope``
        (None: the unscoped ones, stored from lone questions)."""
        vector_part = f"KNN {k} @{F.EMBEDDING} $vec{self._policy} AS {DISTANCE}"
        knn = f"({self.layout.scoped_filter(tenant, scope)})=>[{vector_part}]"
        query = (
            Query(knn)
            .sort_by(DISTANCE)
            .return_fields(*_SEARCH_FIELDS)
            .return_field(F.EMBEDDING, decode_field=False)
            .paging(0, k)
            .dialect(2)
        )
        params: dict[str, str | int | float | bytes] = {
            "vec": np.asarray(vector, dtype=np.float32).tobytes()
        }
        result = await redis_call(lambda: self._ft.search(query, query_params=params))
        return [
            self._candidate(doc)
            for doc in result.docs
            if as_text(doc.tenant) == tenant  # defence in depth: never cross tenants
        ]

    def _candidate(self, doc: Any) -> Candidate:
        def number(field: str) -> float:
            return float(as_text(getattr(doc, field, b"0")) or 0)

        return Candidate(
            id=self.layout.example_id(doc.id),
            prompt=as_text(doc.prompt),
            response=as_text(doc.response),
            similarity=1.0 - float(as_text(getattr(doc, DISTANCE))),
            vector=np.frombuffer(getattr(doc, F.EMBEDDING), dtype=np.float32),
            rated=number(F.RATED),
            helped=number(F.HELPED),
            tokens=int(number(F.TOKENS)),
        )

    async def exact(self, tenant: str, prompt: str) -> StoredExample | None:
        key = self.layout.exact_key(tenant, prompt)
        example_id = await redis_call(lambda: self._r.get(key))
        if example_id is None:
            return None
        return await self.get(as_text(example_id))

    async def get(self, example_id: str) -> StoredExample | None:
        key = self.layout.example_key(example_id)
        fields = await redis_call(lambda: self._r.hmget(key, _STORED_FIELDS))
        if fields[0] is None:
            return None
        tenant, prompt, response, model = (as_text(f or b"") for f in fields)
        return StoredExample(example_id, tenant, prompt, response, model)

    # -- write ------------------------------------------------------------------------
    async def add(
        self,
        tenant: str,
        prompt: str,
        response: str,
        vector: Vector,
        model: str,
        extra: Mapping[str, str | float] | None = None,
        *,
        exact_text: str | None = None,
        request_id: str | None = None,
        ttl_seconds: int | None = None,
        scope: str | None = None,
    ) -> str:
        """Store one example atomically (the hash and its exact-match key together).
        The exact-match key is made from ``exact_text`` (the whole conversation) when
        given, else from the prompt; the hash keeps the key's name for deletion. With a
        ``request_id``, that request's answer can be found (and forgotten) later.
        ``ttl_seconds`` overrides the store's TTL (0: none); ``scope`` limits whom it
        serves within the tenant."""
        example_id = uuid.uuid4().hex
        key = self.layout.example_key(example_id)
        exact = self.layout.exact_key(tenant, prompt if exact_text is None else exact_text)
        mapping = example_fields(tenant, prompt, response, vector, model, time.time())
        mapping[F.EXACT_KEY] = exact
        if request_id is not None:
            mapping[F.REQUEST_ID] = request_id
        if scope is not None:
            mapping[F.SCOPE] = scope
        mapping.update(extra or {})
        ttl = self.ttl if ttl_seconds is None else ttl_seconds
        keys = [key, exact] + ([self.layout.stored_key(request_id)] if request_id else [])

        async def write() -> None:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=cast(Any, mapping))
                pipe.set(exact, example_id)
                if request_id is not None:
                    pipe.set(self.layout.stored_key(request_id), example_id)
                if ttl:
                    for k in keys:
                        pipe.expire(k, ttl)
                await pipe.execute()

        await redis_call(write)
        return example_id

    async def count_of(self, tenant: str) -> int:
        """How many examples ``tenant`` has."""
        query = Query(self.layout.tenant_filter(tenant)).no_content().paging(0, 0).dialect(2)
        result = await redis_call(lambda: self._ft.search(query))
        return int(result.total)

    async def ids_of(self, tenant: str, batch: int = 1000) -> list[str]:
        """Every example id of ``tenant``."""
        ids: list[str] = []
        while True:
            query = (
                Query(self.layout.tenant_filter(tenant))
                .no_content()
                .paging(len(ids), batch)
                .dialect(2)
            )
            result = await redis_call(lambda q=query: self._ft.search(q))  # type: ignore[misc]
            ids += [self.layout.example_id(doc.id) for doc in result.docs]
            if len(result.docs) < batch:
                return ids

    async def stored_by(self, request_id: str) -> str | None:
        """The example a request's answer became, if it became one."""
        value = await redis_call(lambda: self._r.get(self.layout.stored_key(request_id)))
        return None if value is None else as_text(value)

    async def delete(self, example_id: str) -> bool:
        """Delete an example, its exact-match key (if it still points at it) and its
        request's pointer, in one atomic step."""
        key = self.layout.example_key(example_id)
        fields = [F.TENANT, F.PROMPT, F.EXACT_KEY, F.REQUEST_ID]
        tenant, prompt, exact_key, request_id = await redis_call(lambda: self._r.hmget(key, fields))
        if tenant is None:
            return False
        exact = (
            as_text(exact_key)
            if exact_key
            else self.layout.exact_key(as_text(tenant), as_text(prompt or b""))
        )
        keys = [key, exact]
        if request_id:
            keys.append(self.layout.stored_key(as_text(request_id)))
        return bool(await redis_call(lambda: self._delete(keys=keys, args=[example_id])))

    async def record_selection(
        self, example_ids: Sequence[str], gain: float, now: float | None = None
    ) -> None:
        """Count a use of each example and fold ``gain`` into its decayed average."""
        if not example_ids:
            return
        keys = [self.layout.example_key(i) for i in example_ids]
        at = time.time() if now is None else now
        await redis_call(lambda: self._record_gain(keys=keys, args=[at, self.gain_tau, gain]))

    async def record_outcome(self, example_ids: Sequence[str], reward: float) -> None:
        """An observed quality for a response that used these examples."""
        if not example_ids:
            return

        async def write() -> None:
            async with self._r.pipeline(transaction=False) as pipe:
                for i in example_ids:
                    key = self.layout.example_key(i)
                    pipe.hincrbyfloat(key, F.RATED, 1.0)
                    pipe.hincrbyfloat(key, F.HELPED, reward)
                await pipe.execute()

        await redis_call(write)

    async def save_decision(self, request_id: str, payload: dict[str, Any], ttl: int) -> None:
        key = self.layout.decision_key(request_id)
        await redis_call(lambda: self._r.set(key, json.dumps(payload), ex=ttl))

    async def load_decision(self, request_id: str) -> dict[str, Any] | None:
        raw = await redis_call(lambda: self._r.get(self.layout.decision_key(request_id)))
        if raw is None:
            return None
        loaded: dict[str, Any] = json.loads(raw)
        return loaded

    async def claim_verdict(self, request_id: str, purpose: str, ttl: int) -> bool:
        """True for the first caller of any replica to claim a verdict on this request
        for ``purpose``."""
        key = self.layout.verdicts_key(request_id)

        async def claim() -> bool:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, purpose, "1")
                pipe.expire(key, ttl)
                first, _ = await pipe.execute()
            return bool(first)

        return await redis_call(claim)


class RedisBanditStore:
    """The bandit's additive statistics, one Redis hash per arm (shared by replicas)."""

    def __init__(self, client: aioredis.Redis, layout: RedisLayout, dimensions: int) -> None:
        self._r = client
        self._layout = layout
        self._d = dimensions

    def arm_key(self, arm: Route, tenant: str = "") -> str:
        return self._layout.bandit_key(arm, tenant)

    async def load(
        self, arm: Route, tenant: str = ""
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int] | None:
        raw = await redis_call(lambda: self._r.hgetall(self.arm_key(arm, tenant)))
        if not raw:
            return None
        values = {as_text(k): float(v) for k, v in raw.items()}
        a = np.array(
            [[values.get(f"a{i}_{j}", 0.0) for j in range(self._d)] for i in range(self._d)]
        )
        b = np.array([values.get(f"b{i}", 0.0) for i in range(self._d)])
        return a, b, int(values.get("n", 0))

    async def add(
        self,
        arm: Route,
        d_a: np.ndarray[Any, Any],
        d_b: np.ndarray[Any, Any],
        tenant: str = "",
    ) -> None:
        key = self.arm_key(arm, tenant)

        async def write() -> None:
            async with self._r.pipeline(transaction=True) as pipe:
                for i in range(self._d):
                    for j in range(self._d):
                        if d_a[i, j]:
                            pipe.hincrbyfloat(key, f"a{i}_{j}", float(d_a[i, j]))
                    if d_b[i]:
                        pipe.hincrbyfloat(key, f"b{i}", float(d_b[i]))
                pipe.hincrby(key, "n", 1)
                await pipe.execute()

        await redis_call(write)


def _index_fields(info: dict[Any, Any]) -> set[str]:
    return {as_text(attr[1]) for attr in info.get("attributes", []) if len(attr) > 1}


def _num_docs(info: Any) -> int:
    return int(info.get("num_docs", info.get(b"num_docs", 0)))


def _index_dimensions(info: dict[Any, Any]) -> int | None:
    """Dig the vector dimension out of FT.INFO's nested attribute lists."""
    for attribute in info.get("attributes", info.get(b"attributes", [])):
        flat = [as_text(x) if isinstance(x, bytes | str) else x for x in attribute]
        for name in ("dim", "DIM"):
            if name in flat:
                return int(flat[flat.index(name) + 1])
    return None
