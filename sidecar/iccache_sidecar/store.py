"""The example cache in Redis: a vector index of large-model answers, per tenant.

Each example is a hash ``<prefix>:ex:<id>`` holding the request text, the answer, its
embedding and what the router learned about it; the index ``<index_name>`` covers them
with the tenant as a TAG field, so every query is filtered to one tenant. Exact-match
keys ``<prefix>:exact:<tenant>:<sha256>`` point at examples by normalised prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import redis.asyncio as aioredis
from redis.commands.search.field import Field, NumericField, TagField, TextField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.exceptions import RedisError, ResponseError

from iccache_sidecar.domain import Candidate, Route, Vector, estimate_tokens
from iccache_sidecar.errors import DependencyDown

T = TypeVar("T")

# Time-decayed average of the replay gain: S and N decay with time constant tau, then
# gain = S / N. Atomic in Redis so that replicas can update the same example.
_RECORD_GAIN = """
local now = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local g = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local at = tonumber(redis.call('HGET', key, 'gain_at') or now)
    local decay = math.exp(-math.max(0, now - at) / tau)
    local s = tonumber(redis.call('HGET', key, 'gain_sum') or 0) * decay + g
    local n = tonumber(redis.call('HGET', key, 'gain_n') or 0) * decay + 1
    redis.call('HSET', key, 'gain_sum', s, 'gain_n', n, 'gain', s / n, 'gain_at', now)
    redis.call('HINCRBY', key, 'uses', 1)
  end
end
return #KEYS
"""

_SEARCH_FIELDS = (
    "distance",
    "tenant",
    "prompt",
    "response",
    "embedding",
    "rated",
    "helped",
    "tokens",
)
_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")
_SPACES = re.compile(r"\s+")


def escape_tag(value: str) -> str:
    return _TAG_SPECIAL.sub(r"\\\1", value)


def normalise_prompt(text: str) -> str:
    """What counts as 'the same prompt' for exact-match hits."""
    return _SPACES.sub(" ", text.strip().lower())


async def redis_call(op: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis operation; its failure becomes DependencyDown (callers degrade)."""
    try:
        return await op()
    except RedisError as exc:
        raise DependencyDown(f"redis: {exc}") from exc


@dataclass(frozen=True)
class StoredExample:
    id: str
    tenant: str
    prompt: str
    response: str
    model: str


class ExampleStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        index_name: str,
        key_prefix: str,
        ttl_seconds: int = 0,
        gain_tau_seconds: float = 86_400.0,
    ) -> None:
        self._r = client
        self.index_name = index_name
        self.prefix = key_prefix
        self.ttl = ttl_seconds
        self.gain_tau = gain_tau_seconds
        self._record_gain = client.register_script(_RECORD_GAIN)
        self._ft = client.ft(index_name)

    # -- keys -------------------------------------------------------------------------
    def example_key(self, example_id: str) -> str:
        return f"{self.prefix}:ex:{example_id}"

    def exact_key(self, tenant: str, prompt: str) -> str:
        digest = hashlib.sha256(normalise_prompt(prompt).encode()).hexdigest()
        return f"{self.prefix}:exact:{tenant}:{digest}"

    def decision_key(self, request_id: str) -> str:
        return f"{self.prefix}:req:{request_id}"

    # -- index ------------------------------------------------------------------------
    async def ensure_index(self, dimensions: int) -> None:
        """Create the vector index if missing; refuse one built for other dimensions."""
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
                    f"index {self.index_name!r} holds {found}-dimension vectors but the "
                    f"embedder makes {dimensions}; use another index name or drop it"
                )
            return
        schema: list[Field] = [
            TagField("tenant", case_sensitive=True),
            TagField("model"),
            TextField("prompt"),
            NumericField("created_at", sortable=True),
            NumericField("gain", sortable=True),
            VectorField(
                "embedding",
                "HNSW",
                {"TYPE": "FLOAT32", "DIM": dimensions, "DISTANCE_METRIC": "COSINE"},
            ),
        ]
        definition = IndexDefinition(prefix=[f"{self.prefix}:ex:"], index_type=IndexType.HASH)
        await redis_call(lambda: ft.create_index(schema, definition=definition))

    async def count(self) -> int:
        info = await redis_call(lambda: self._ft.info())
        return int(info.get("num_docs", info.get(b"num_docs", 0)))

    async def ping(self) -> bool:
        return bool(await redis_call(lambda: self._r.ping()))

    # -- read -------------------------------------------------------------------------
    async def search(self, tenant: str, vector: Vector, k: int) -> list[Candidate]:
        """The ``k`` nearest examples of ``tenant`` (and only of ``tenant``)."""
        query = (
            Query(f"(@tenant:{{{escape_tag(tenant)}}})=>[KNN {k} @embedding $vec AS distance]")
            .sort_by("distance")
            .return_fields(*_SEARCH_FIELDS)
            .return_field("embedding", decode_field=False)
            .paging(0, k)
            .dialect(2)
        )
        params: dict[str, str | int | float | bytes] = {
            "vec": np.asarray(vector, dtype=np.float32).tobytes()
        }
        result = await redis_call(lambda: self._ft.search(query, query_params=params))
        out = []
        for doc in result.docs:
            if as_text(doc.tenant) != tenant:  # defence in depth: never cross tenants
                continue
            out.append(
                Candidate(
                    id=as_text(doc.id).removeprefix(f"{self.prefix}:ex:"),
                    prompt=as_text(doc.prompt),
                    response=as_text(doc.response),
                    similarity=1.0 - float(as_text(doc.distance)),
                    vector=np.frombuffer(doc.embedding, dtype=np.float32),
                    rated=float(as_text(getattr(doc, "rated", b"0")) or 0),
                    helped=float(as_text(getattr(doc, "helped", b"0")) or 0),
                    tokens=int(as_text(getattr(doc, "tokens", b"0")) or 0),
                )
            )
        return out

    async def exact(self, tenant: str, prompt: str) -> StoredExample | None:
        example_id = await redis_call(lambda: self._r.get(self.exact_key(tenant, prompt)))
        if example_id is None:
            return None
        return await self.get(as_text(example_id))

    async def get(self, example_id: str) -> StoredExample | None:
        fields = await redis_call(
            lambda: self._r.hmget(
                self.example_key(example_id), ["tenant", "prompt", "response", "model"]
            )
        )
        if fields[0] is None:
            return None
        tenant, prompt, response, model = (as_text(f or b"") for f in fields)
        return StoredExample(example_id, tenant, prompt, response, model)

    # -- write ------------------------------------------------------------------------
    @property
    def client(self) -> aioredis.Redis:
        return self._r

    async def add(
        self,
        tenant: str,
        prompt: str,
        response: str,
        vector: Vector,
        model: str,
        extra: Mapping[str, str | float] | None = None,
    ) -> str:
        """Store one example atomically (the hash and its exact-match key together)."""
        example_id = uuid.uuid4().hex
        key = self.example_key(example_id)
        mapping: dict[str | bytes | int | float, str | bytes | float | int] = {
            "tenant": tenant,
            "prompt": prompt,
            "response": response,
            "model": model,
            "embedding": np.asarray(vector, dtype=np.float32).tobytes(),
            "created_at": time.time(),
            "tokens": estimate_tokens(prompt) + estimate_tokens(response),
            "uses": 0,
            "rated": 0,
            "helped": 0,
            "gain": 0,
            **cast(dict[str | bytes | int | float, str | float], extra or {}),
        }

        async def write() -> None:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=cast(Any, mapping))
                exact = self.exact_key(tenant, prompt)
                pipe.set(exact, example_id)
                if self.ttl:
                    pipe.expire(key, self.ttl)
                    pipe.expire(exact, self.ttl)
                await pipe.execute()

        await redis_call(write)
        return example_id

    async def record_selection(
        self, example_ids: Sequence[str], gain: float, now: float | None = None
    ) -> None:
        """Count a use of each example and fold ``gain`` into its decayed average."""
        if not example_ids:
            return
        keys = [self.example_key(i) for i in example_ids]
        at = time.time() if now is None else now
        await redis_call(lambda: self._record_gain(keys=keys, args=[at, self.gain_tau, gain]))

    async def record_outcome(self, example_ids: Sequence[str], reward: float) -> None:
        """An observed quality for a response that used these examples."""
        if not example_ids:
            return

        async def write() -> None:
            async with self._r.pipeline(transaction=False) as pipe:
                for i in example_ids:
                    key = self.example_key(i)
                    pipe.hincrbyfloat(key, "rated", 1.0)
                    pipe.hincrbyfloat(key, "helped", reward)
                await pipe.execute()

        await redis_call(write)

    async def save_decision(self, request_id: str, payload: dict[str, Any], ttl: int) -> None:
        await redis_call(
            lambda: self._r.set(self.decision_key(request_id), json.dumps(payload), ex=ttl)
        )

    async def load_decision(self, request_id: str) -> dict[str, Any] | None:
        raw = await redis_call(lambda: self._r.get(self.decision_key(request_id)))
        if raw is None:
            return None
        loaded: dict[str, Any] = json.loads(raw)
        return loaded


class RedisBanditStore:
    """The bandit's additive statistics, one Redis hash per arm (shared by replicas)."""

    def __init__(self, client: aioredis.Redis, key: str, dimensions: int) -> None:
        self._r = client
        self._key = key
        self._d = dimensions

    def arm_key(self, arm: Route) -> str:
        # The small arm keeps the key it had when it was the only one, so an upgrade
        # keeps what routers learned.
        return self._key if arm is Route.SMALL else f"{self._key}:{arm.value}"

    async def load(
        self, arm: Route
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int] | None:
        raw = await redis_call(lambda: self._r.hgetall(self.arm_key(arm)))
        if not raw:
            return None
        values = {as_text(k): float(v) for k, v in raw.items()}
        a = np.array(
            [[values.get(f"a{i}_{j}", 0.0) for j in range(self._d)] for i in range(self._d)]
        )
        b = np.array([values.get(f"b{i}", 0.0) for i in range(self._d)])
        return a, b, int(values.get("n", 0))

    async def add(self, arm: Route, d_a: np.ndarray[Any, Any], d_b: np.ndarray[Any, Any]) -> None:
        key = self.arm_key(arm)

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


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _index_dimensions(info: dict[Any, Any]) -> int | None:
    """Dig the vector dimension out of FT.INFO's nested attribute lists."""
    for attribute in info.get("attributes", info.get(b"attributes", [])):
        flat = [as_text(x) if isinstance(x, bytes | str) else x for x in attribute]
        for name in ("dim", "DIM"):
            if name in flat:
                return int(flat[flat.index(name) + 1])
    return None
