"""The bulk engine against Feast's own engine on views with different entities, several row
groups and several chunks: the same Redis bytes, and Feast's write rule on a second run; on one
Redis and on a Redis Cluster (keys spread over the nodes, the rule checked per hash slot)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Array, Float32, Float64, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from churnfs.store.codec import entity_keys_int64, field_key, timestamp_field
from churnfs.store.redis_servers import connection_nodes

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2025, 3, 1, tzinfo=UTC)
WIDE_USERS = range(1, 11)  # the wide view (64 floats) drives
NARROW_USERS = range(5, 21)  # users 11-20 only in the narrow view


def _times(values: list[datetime]) -> pa.Array:
    return pa.array(values, type=pa.timestamp("us", tz="UTC"))


def _write_sources(folder: Path) -> None:
    rng = np.random.default_rng(7)
    # Event-sourced wide rows: every user at day 1, even users again at day 20 (a later row group),
    # and one row after the window that must not win.
    wide_users = [*WIDE_USERS, *[u for u in WIDE_USERS if u % 2 == 0], 3]
    wide_days = [1] * len(WIDE_USERS) + [20] * (len(WIDE_USERS) // 2) + [90]
    vectors = rng.normal(size=(len(wide_users), 64)).astype(np.float32)
    wide = pa.table(
        {
            "user_id": pa.array(wide_users, type=pa.int64()),
            "event_timestamp": _times([START + timedelta(days=d) for d in wide_days]),
            "created_timestamp": _times([START + timedelta(days=d, hours=1) for d in wide_days]),
            "vector": pa.array(list(vectors), type=pa.list_(pa.float32())),
        }
    )
    pq.write_table(wide, folder / "wide.parquet", row_group_size=4)
    narrow_users = list(NARROW_USERS)
    narrow = pa.table(
        {
            "user_id": pa.array(narrow_users[::-1], type=pa.int64()),  # not in entity order
            "event_timestamp": _times([START + timedelta(days=u) for u in narrow_users[::-1]]),
            "created_timestamp": _times([START + timedelta(days=u) for u in narrow_users[::-1]]),
            "count": pa.array(rng.integers(0, 5, len(narrow_users)), type=pa.int64()),
            "label": pa.array(rng.choice(["a", "b", "c"], len(narrow_users))),
            "score": pa.array(rng.normal(size=len(narrow_users))),
        }
    )
    pq.write_table(narrow, folder / "narrow.parquet", row_group_size=5)


def _objects(folder: Path) -> list[Any]:
    user = Entity(name="user", join_keys=["user_id"])

    def source(name: str) -> FileSource:
        return FileSource(
            name=f"{name}_source",
            path=str(folder / f"{name}.parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        )

    wide = FeatureView(
        name="wide",
        entities=[user],
        ttl=timedelta(0),
        schema=[Field(name="user_id", dtype=Int64), Field(name="vector", dtype=Array(Float32))],
        source=source("wide"),
    )
    narrow = FeatureView(
        name="narrow",
        entities=[user],
        ttl=timedelta(days=365),
        schema=[
            Field(name="user_id", dtype=Int64),
            Field(name="count", dtype=Int64),
            Field(name="label", dtype=String),
            Field(name="score", dtype=Float64),
        ],
        source=source("narrow"),
    )
    return [user, wide, narrow]


def _store(folder: Path, project: str, connection: str, bulk: bool, redis_type: str) -> FeatureStore:
    repo = folder / project
    repo.mkdir()
    config: dict[str, object] = {
        "project": project,
        "provider": "local",
        "registry": str(repo / "registry.db"),
        "offline_store": {"type": "duckdb"},
        "online_store": {"type": "redis", "connection_string": connection, "redis_type": redis_type},
        "entity_key_serialization_version": 3,
    }
    if bulk:
        # Three entities per chunk: several chunks, each checked before the previous is written.
        config["batch_engine"] = {"type": "churnfs.store.engine.RedisBulkEngine", "chunk_rows": 3}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=str(repo))
    store.apply(_objects(folder))
    return store


def _client(connection: str, redis_type: str) -> Any:
    if redis_type == "redis_cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in connection_nodes(connection)]
        return RedisCluster(startup_nodes=nodes)
    host_port, _, rest = connection.partition(",")
    host, _, port = host_port.partition(":")
    db = int(dict(p.split("=") for p in rest.split(",") if p).get("db", 0))
    return redis.Redis(host=host, port=int(port), db=db)


def _key(user: int, project: str) -> bytes:
    return entity_keys_int64(np.array([user]), "user_id", project)[0].tobytes()


USERS = sorted(set(WIDE_USERS) | set(NARROW_USERS))


@pytest.fixture(params=["redis", "redis_cluster"])
def materialized(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[FeatureStore, Any]]:
    """Both projects materialized into the test database (or the session's Redis Cluster): the
    bulk engine's store and a client."""
    redis_type = request.param
    if redis_type == "redis_cluster":
        connection = request.getfixturevalue("redis_cluster").connection_string
    else:
        connection = request.getfixturevalue("redis_connection_string")
    _write_sources(tmp_path)
    bulk = _store(tmp_path, "bulk_engine_test", connection, bulk=True, redis_type=redis_type)
    feast = _store(tmp_path, "feast_engine_test", connection, bulk=False, redis_type=redis_type)
    client = _client(connection, redis_type)
    try:
        bulk.materialize(START, END)
        feast.materialize(START, END)
        yield bulk, client
    finally:
        for user in USERS:
            client.delete(_key(user, "bulk_engine_test"))
            client.delete(_key(user, "feast_engine_test"))


def _hashes(client: Any, project: str) -> list[dict[bytes, bytes]]:
    return [client.hgetall(_key(user, project)) for user in USERS]


def test_bulk_engine_writes_feasts_bytes_for_views_with_different_entities(
    materialized: tuple[FeatureStore, Any],
) -> None:
    bulk, client = materialized
    ours, feasts = _hashes(client, "bulk_engine_test"), _hashes(client, "feast_engine_test")
    assert [len(h) for h in ours] == [2 if u < 5 else 6 if u <= 10 else 4 for u in USERS]
    assert ours == feasts
    engine = bulk._get_provider().batch_engine  # type: ignore[attr-defined]
    assert engine.rows_written == {"wide": 10, "narrow": 16}


def test_a_second_run_writes_only_rows_newer_than_the_stored_ones(
    materialized: tuple[FeatureStore, Any],
) -> None:
    bulk, client = materialized
    project = "bulk_engine_test"
    client.delete(_key(6, project))  # gone: both views' rows are written again
    client.hdel(_key(12, project), timestamp_field("narrow"))  # no stored time: written again
    later = Timestamp()
    later.FromDatetime(datetime(2030, 1, 1))
    marker = b"kept"
    client.hset(_key(7, project), mapping={timestamp_field("narrow"): later.SerializeToString()})
    client.hset(_key(7, project), field_key("narrow", "score"), marker)  # a newer value: kept
    bulk.materialize(START, END)
    engine = bulk._get_provider().batch_engine  # type: ignore[attr-defined]
    assert engine.rows_written == {"wide": 1, "narrow": 2}
    ours, feasts = _hashes(client, project), _hashes(client, "feast_engine_test")
    assert ours[USERS.index(7)][field_key("narrow", "score")] == marker
    for user, mine, theirs in zip(USERS, ours, feasts, strict=True):
        if user != 7:
            assert mine == theirs, user
