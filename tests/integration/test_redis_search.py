"""Redis 8.2 with the search module answers vector (KNN) queries, with a TAG filter."""

from __future__ import annotations

import numpy as np
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query

from iccache_dev.local.redis import LocalRedis


def _vec(*xs: float) -> bytes:
    v = np.array(xs, dtype=np.float32)
    return (v / np.linalg.norm(v)).tobytes()


def test_server_is_redis_8(redis_server: LocalRedis) -> None:
    with redis_server.client() as r:
        assert str(r.info("server")["redis_version"]).startswith("8.")


def test_hnsw_knn_returns_nearest_first_within_tenant(redis_server: LocalRedis) -> None:
    with redis_server.client() as r:
        r.ft("knn_test").create_index(
            [
                TagField("tenant"),
                VectorField(
                    "vec",
                    "HNSW",
                    {"TYPE": "FLOAT32", "DIM": 3, "DISTANCE_METRIC": "COSINE"},
                ),
            ],
            definition=IndexDefinition(prefix=["knn:"], index_type=IndexType.HASH),
        )
        docs = {
            "knn:a": ("t1", _vec(1, 0, 0)),
            "knn:b": ("t1", _vec(1, 1, 0)),
            "knn:c": ("t1", _vec(0, 1, 0)),
            "knn:d": ("t1", _vec(0, 0, 1)),
            "knn:x": ("t2", _vec(1, 0.01, 0)),  # the closest of all, but another tenant
        }
        for key, (tenant, vec) in docs.items():
            r.hset(key, mapping={"tenant": tenant, "vec": vec})

        query = (
            Query("(@tenant:{t1})=>[KNN 3 @vec $q AS dist]")
            .sort_by("dist")
            .return_fields("dist", "tenant")
            .dialect(2)
        )
        result = r.ft("knn_test").search(query, query_params={"q": _vec(1, 0.2, 0)})

        assert [d.id for d in result.docs] == ["knn:a", "knn:b", "knn:c"]
        distances = [float(d.dist) for d in result.docs]
        assert distances == sorted(distances)
        assert {d.tenant for d in result.docs} == {"t1"}
