"""Benchmark: online retrieval of ``churn_model_v1`` in process, and Redis memory per user.

The world (cached like the materialize suite's) is applied and materialized into a scratch Redis
database, then ``FeatureStore.get_online_features(...).to_dict()`` is timed for one user per call
and for 100 users per call (random users, after a warm-up) through the churnfs online store (the
one feature_store.yaml names) and, side by side on the same users, through Feast's own
``RedisOnlineStore`` (same registry and Redis database), against a raw ``HMGET`` of the same
fields. Both stores' answers to one 100-user call are checked equal first.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.common import Row
from bench.materialize import (
    BENCH_REDIS_DB,
    _redis_host_port,
    baseline_repo,
    build_world,
    redis_bytes_per_key,
)

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

SUITE = "online"
SERVICE = "churn_model_v1"


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


@dataclass
class Timings:
    single: list[float]
    single_cpu_ms: float
    batched: list[float]
    batched_cpu_ms: float
    batched_full_gcs: int  # Python's generation-2 collections during the 100-user calls


def _time_calls(
    store: FeatureStore,
    service: FeatureService,
    single_rows: list[list[dict[str, int]]],
    batch_rows: list[list[dict[str, int]]],
) -> Timings:
    """Wall seconds of each ``get_online_features(...).to_dict()`` call, and CPU ms per call."""

    def call(rows: list[dict[str, int]]) -> None:
        store.get_online_features(features=service, entity_rows=rows).to_dict()

    for rows in single_rows[:200]:
        call(rows)  # warm-up: registry cache, connections
    single = []
    cpu = time.process_time()
    for rows in single_rows:
        start = time.perf_counter()
        call(rows)
        single.append(time.perf_counter() - start)
    single_cpu_ms = (time.process_time() - cpu) / len(single_rows) * 1000
    batched = []
    full_gcs = []

    def count_full_gcs(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_gcs.append(1)

    gc.callbacks.append(count_full_gcs)
    cpu = time.process_time()
    try:
        for rows in batch_rows:
            start = time.perf_counter()
            call(rows)
            batched.append(time.perf_counter() - start)
    finally:
        gc.callbacks.remove(count_full_gcs)
    batched_cpu_ms = (time.process_time() - cpu) / len(batch_rows) * 1000
    return Timings(single, single_cpu_ms, batched, batched_cpu_ms, len(full_gcs))


def run(workdir: Path, users: int, calls: int = 2000, batch_calls: int = 300) -> list[Row]:
    import redis

    from churnfs.store import apply_repo, get_store, materialize
    from churnfs.store.codec import entity_keys_int64, field_key, timestamp_field

    world = build_world(workdir, users)
    host, port = _redis_host_port()
    settings = world.model_copy(
        update={
            "data_dir": workdir / "online",
            "redis_connection_string": f"{host}:{port},db={BENCH_REDIS_DB}",
        }
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "offline_store").symlink_to(world.offline_store_dir.resolve())
    (settings.data_dir / "raw").symlink_to(world.raw_dir.resolve())
    client = redis.Redis(host=host, port=port, db=BENCH_REDIS_DB)
    client.flushdb()
    try:
        apply_repo(settings)
        materialize(settings)
        store = get_store(settings)
        feast_store = get_store(settings.model_copy(update={"feast_repo_path": baseline_repo(workdir)}))
        service = store.get_feature_service(SERVICE)
        rng = np.random.default_rng(0)
        ids = rng.integers(1, users + 1, size=calls + batch_calls * 100)
        single_rows = [[{"user_id": int(u)}] for u in ids[:calls]]
        batch_rows = [
            [{"user_id": int(u)} for u in ids[calls + i * 100 : calls + (i + 1) * 100]]
            for i in range(batch_calls)
        ]
        check = batch_rows[0]
        answer = store.get_online_features(features=service, entity_rows=check).to_dict(True)
        assert answer == feast_store.get_online_features(features=service, entity_rows=check).to_dict(True)
        assert all(v[0] is not None for v in answer.values()), "a served feature is missing"
        timings = {"churnfs": _time_calls(store, service, single_rows, batch_rows)}
        load = {"churnfs": os.getloadavg()[0]}
        timings["feast"] = _time_calls(feast_store, service, single_rows, batch_rows)
        load["feast"] = os.getloadavg()[0]

        fields = [field_key(p.name, f.name) for p in service.feature_view_projections for f in p.features]
        fields += [timestamp_field(p.name) for p in service.feature_view_projections]
        raw = []
        for uid in ids[:calls]:
            key = entity_keys_int64(np.array([uid]), "user_id", store.project)[0].tobytes()
            start = time.perf_counter()
            client.hmget(key, fields)
            raw.append(time.perf_counter() - start)
        per_user = redis_bytes_per_key(client)
    finally:
        client.flushdb()
    r50, r99 = _percentiles(raw)
    n_features = sum(len(p.features) for p in service.feature_view_projections)
    rows = []
    for name, label in (("churnfs", "ChurnRedisOnlineStore"), ("feast", "Feast's RedisOnlineStore")):
        t = timings[name]
        p50, p99 = _percentiles(t.single)
        b50, b99 = _percentiles(t.batched)
        ours = name == "churnfs"
        head = f"get_online_features {SERVICE} via {label}"
        rows += [
            Row(SUITE, f"{head}, 1 user: p50", p50, "ms", note=f"{n_features} features, `.to_dict()`"),
            Row(SUITE, f"{head}, 1 user: p99", p99, "ms", "<= 3" if ours else "", p99 <= 3 if ours else None),
            Row(
                SUITE,
                f"{head}, 1 user: CPU per call",
                t.single_cpu_ms,
                "ms",
                note=f"this process's CPU time; 1-min load average {load[name]:.1f} during the run",
            ),
            Row(SUITE, f"{head}, 100 users: p50", b50, "ms"),
            Row(
                SUITE,
                f"{head}, 100 users: p99",
                b99,
                "ms",
                goal="<= 40" if ours else "",
                ok=b99 <= 40 if ours else None,
                note=f"{t.batched_full_gcs} full (generation-2) GCs in {len(t.batched)} calls",
            ),
            Row(
                SUITE,
                f"{head}, 100 users: CPU per call",
                t.batched_cpu_ms,
                "ms",
                note="answers equal to Feast's (checked on one 100-user call)" if ours else "the reference",
            ),
        ]
    return [
        *rows,
        Row(SUITE, "raw HMGET of the same fields, 1 user: p50 / p99", f"{r50:.3f} / {r99:.3f}", "ms"),
        Row(
            SUITE,
            "Redis memory per user (every materialized view)",
            per_user,
            "bytes",
            note="MEMORY USAGE, 1,000 users",
        ),
    ]


if __name__ == "__main__":
    import sys
    import tempfile

    scale = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_USERS", "100000"))
    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), scale):
            print(row)
