"""Benchmark: online retrieval of ``churn_model_v1`` in process, and Redis memory per user.

The world (cached like the materialize suite's) is applied and materialized into a scratch Redis
database, then ``FeatureStore.get_online_features`` is timed for one user per call and for 100
users per call (random users, after a warm-up), against a raw ``HMGET`` of the same fields.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bench.common import Row
from bench.materialize import BENCH_REDIS_DB, _redis_host_port, build_world, redis_bytes_per_key

SUITE = "online"
SERVICE = "churn_model_v1"


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


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
        service = store.get_feature_service(SERVICE)
        rng = np.random.default_rng(0)
        ids = rng.integers(1, users + 1, size=calls + batch_calls * 100)

        def one(uid: int) -> dict[str, list[object]]:
            return store.get_online_features(features=service, entity_rows=[{"user_id": uid}]).to_dict()

        for uid in ids[:200]:
            one(int(uid))  # warm-up: registry cache, connections
        single = []
        cpu = time.process_time()
        for uid in ids[:calls]:
            start = time.perf_counter()
            one(int(uid))
            single.append(time.perf_counter() - start)
        single_cpu_ms = (time.process_time() - cpu) / calls * 1000
        batched = []
        cpu = time.process_time()
        for i in range(batch_calls):
            rows = [{"user_id": int(u)} for u in ids[calls + i * 100 : calls + (i + 1) * 100]]
            start = time.perf_counter()
            store.get_online_features(features=service, entity_rows=rows).to_dict()
            batched.append(time.perf_counter() - start)
        batched_cpu_ms = (time.process_time() - cpu) / batch_calls * 1000
        sample = one(int(ids[0]))
        assert all(v[0] is not None for v in sample.values()), "a served feature is missing"

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
    load_note = f"this process's CPU time; load average {os.getloadavg()[0]:.1f} during the run"
    p50, p99 = _percentiles(single)
    b50, b99 = _percentiles(batched)
    r50, r99 = _percentiles(raw)
    n_features = sum(len(p.features) for p in service.feature_view_projections)
    return [
        Row(SUITE, f"get_online_features {SERVICE}, 1 user: p50", p50, "ms", note=f"{n_features} features"),
        Row(SUITE, f"get_online_features {SERVICE}, 1 user: p99", p99, "ms", goal="<= 3", ok=p99 <= 3),
        Row(
            SUITE, f"get_online_features {SERVICE}, 1 user: CPU per call", single_cpu_ms, "ms", note=load_note
        ),
        Row(SUITE, f"get_online_features {SERVICE}, 100 users: p50", b50, "ms"),
        Row(SUITE, f"get_online_features {SERVICE}, 100 users: p99", b99, "ms", goal="<= 40", ok=b99 <= 40),
        Row(SUITE, f"get_online_features {SERVICE}, 100 users: CPU per call", batched_cpu_ms, "ms"),
        Row(SUITE, "raw HMGET of the same fields, 1 user: p50 / p99", f"{r50:.3f} / {r99:.3f}", "ms"),
        Row(
            SUITE, "Redis memory per user (all 3 views)", per_user, "bytes", note="MEMORY USAGE, 1,000 users"
        ),
    ]


if __name__ == "__main__":
    import sys
    import tempfile

    scale = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_USERS", "100000"))
    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), scale):
            print(row)
