"""Benchmark: online retrieval of ``churn_model_v1`` in process, and Redis memory per user.

The world (cached like the materialize suite's) is applied and materialized into a scratch Redis
database, and both stores' answers to one 100-user call are checked equal. Then each reader is
timed in its own fresh process (no heap, caches or GC state shared with the other reader or with
the set-up), ``runs`` times, alternating which reader goes first:

* ``churnfs``: ``FeatureStore.get_online_features(...).to_dict()`` through the churnfs online store
  (the one feature_store.yaml names);
* ``feast``: the same call through Feast's own ``RedisOnlineStore`` (same registry and Redis
  database);
* ``raw``: an ``HMGET`` of the same fields, the floor.

Each reader process warms up, then times one user per call and 100 users per call (the same
random users for every reader and run). The page shows each number's median and range over runs.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import VENV_BIN, Row, Spread, load_average, marked_line, run_measured
from bench.materialize import (
    BENCH_REDIS_DB,
    _redis_host_port,
    baseline_repo,
    build_world,
    redis_bytes_per_key,
)

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

    from churnfs.settings import Settings

SUITE = "online"
SERVICE = "churn_model_v1"
READERS = ("churnfs", "feast")
LABELS = {"churnfs": "ChurnRedisOnlineStore", "feast": "Feast's RedisOnlineStore"}
CALLS = 2000
BATCH_CALLS = 300
BATCH = 100
WARM_UP_CALLS = 200


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


@dataclass
class Timings:
    """One reader's run, as its process reports it (milliseconds)."""

    single_p50: float
    single_p99: float
    single_cpu_ms: float
    batched_p50: float = float("nan")
    batched_p99: float = float("nan")
    batched_cpu_ms: float = float("nan")
    batched_full_gcs: int = 0  # Python's generation-2 collections during the 100-user calls


def _user_ids(users: int) -> np.ndarray:
    """The users every reader asks for, in order: ``CALLS`` single calls, then ``BATCH_CALLS``
    calls of ``BATCH`` users."""
    return np.random.default_rng(0).integers(1, users + 1, size=CALLS + BATCH_CALLS * BATCH)


def _time_calls(store: FeatureStore, service: FeatureService, users: int) -> Timings:
    """Wall milliseconds of each ``get_online_features(...).to_dict()`` call, and CPU ms per call."""
    ids = _user_ids(users)
    single_rows = [[{"user_id": int(u)}] for u in ids[:CALLS]]
    batch_rows = [
        [{"user_id": int(u)} for u in ids[CALLS + i * BATCH : CALLS + (i + 1) * BATCH]]
        for i in range(BATCH_CALLS)
    ]

    def call(rows: list[dict[str, int]]) -> None:
        store.get_online_features(features=service, entity_rows=rows).to_dict()

    for rows in single_rows[:WARM_UP_CALLS]:
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
    p50, p99 = _percentiles(single)
    b50, b99 = _percentiles(batched)
    return Timings(p50, p99, single_cpu_ms, b50, b99, batched_cpu_ms, len(full_gcs))


def _time_raw_hmget(store: FeatureStore, service: FeatureService, settings: Settings, users: int) -> Timings:
    """Wall milliseconds of a raw ``HMGET`` of the served fields, one user per call."""
    import redis

    from churnfs.store.codec import entity_keys_int64, field_key, timestamp_field
    from churnfs.store.embedded import parse_host_port

    host, port = parse_host_port(settings.redis_connection_string)
    client = redis.Redis(host=host, port=port, db=BENCH_REDIS_DB)
    fields = [field_key(p.name, f.name) for p in service.feature_view_projections for f in p.features]
    fields += [timestamp_field(p.name) for p in service.feature_view_projections]
    keys = [
        entity_keys_int64(np.array([u]), "user_id", store.project)[0].tobytes()
        for u in _user_ids(users)[:CALLS]
    ]
    for key in keys[:WARM_UP_CALLS]:
        client.hmget(key, fields)
    raw = []
    cpu = time.process_time()
    for key in keys:
        start = time.perf_counter()
        client.hmget(key, fields)
        raw.append(time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu) / len(keys) * 1000
    p50, p99 = _percentiles(raw)
    return Timings(p50, p99, cpu_ms)


def read(reader: str, data_dir: str, repo: str, redis: str, users: int) -> None:
    """Subprocess: time one reader on a fresh heap; prints ``TIMINGS {json}``."""
    from churnfs.settings import Settings
    from churnfs.store import get_store

    settings = Settings(data_dir=Path(data_dir), redis_connection_string=redis, feast_repo_path=Path(repo))
    store = get_store(settings)
    service = store.get_feature_service(SERVICE)
    timings = (
        _time_raw_hmget(store, service, settings, users)
        if reader == "raw"
        else _time_calls(store, service, users)
    )
    print("TIMINGS " + json.dumps({**asdict(timings), "load": load_average()}))


def _reader_run(reader: str, settings: Settings, repo: Path, users: int) -> dict[str, Any]:
    load_before = load_average()
    measured = run_measured(
        [
            str(VENV_BIN / "python"),
            "-m",
            "bench.online",
            "read",
            reader,
            str(settings.data_dir),
            str(repo),
            settings.redis_connection_string,
            str(users),
        ]
    )
    result = json.loads(marked_line(measured.stdout, "TIMINGS"))
    result["loads"] = [load_before, result.pop("load")]
    return dict(result)


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    """Load the world into a scratch Redis database, check both stores agree, then time each
    reader ``runs`` times, each time in a fresh process."""
    import redis

    from churnfs.store import apply_repo, get_store, materialize

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
    results: dict[str, list[dict[str, Any]]] = {r: [] for r in (*READERS, "raw")}
    try:
        apply_repo(settings)
        materialize(settings)
        ours = get_store(settings)
        repos = {"churnfs": settings.feast_repo_path, "feast": baseline_repo(workdir)}
        theirs = get_store(settings.model_copy(update={"feast_repo_path": repos["feast"]}))
        service = ours.get_feature_service(SERVICE)
        n_features = sum(len(p.features) for p in service.feature_view_projections)
        check = [{"user_id": int(u)} for u in _user_ids(users)[CALLS : CALLS + BATCH]]
        answer = ours.get_online_features(features=service, entity_rows=check).to_dict(True)
        assert answer == theirs.get_online_features(features=service, entity_rows=check).to_dict(True)
        assert all(v[0] is not None for v in answer.values()), "a served feature is missing"
        del ours, theirs, answer
        for run_index in range(runs):
            order = READERS if run_index % 2 == 0 else READERS[::-1]
            for reader in (*order, "raw"):
                results[reader].append(
                    _reader_run(reader, settings, repos.get(reader, repos["churnfs"]), users)
                )
        per_user = redis_bytes_per_key(client)
    finally:
        client.flushdb()
    return _rows(results, n_features, per_user)


def _rows(results: dict[str, list[dict[str, Any]]], n_features: int, per_user: float) -> list[Row]:
    def spread(reader: str, field: str) -> Spread:
        return Spread.of([r[field] for r in results[reader]])

    loads = [x for runs in results.values() for r in runs for x in r["loads"]]
    rows = [
        Row(
            SUITE,
            "1-min load average before / after each reader process, lowest-highest",
            f"{min(loads):.2f}-{max(loads):.2f}",
            note=f"{os.cpu_count()} cores; each reader in a fresh process, "
            f"{len(results['churnfs'])} run(s) each, alternating which goes first",
        )
    ]
    for reader in READERS:
        ours = reader == "churnfs"
        head = f"get_online_features {SERVICE} via {LABELS[reader]}"
        single_p99 = spread(reader, "single_p99")
        batched_p99 = spread(reader, "batched_p99")
        gcs = sum(r["batched_full_gcs"] for r in results[reader])
        rows += [
            Row(
                SUITE,
                f"{head}, 1 user: p50",
                spread(reader, "single_p50").median,
                "ms",
                note=f"{spread(reader, 'single_p50').as_range('.3f')}; {n_features} features, `.to_dict()`",
            ),
            Row(
                SUITE,
                f"{head}, 1 user: p99",
                single_p99.median,
                "ms",
                "<= 3" if ours else "",
                single_p99.median <= 3 if ours else None,
                single_p99.as_range(".3f"),
            ),
            Row(
                SUITE,
                f"{head}, 1 user: CPU per call",
                spread(reader, "single_cpu_ms").median,
                "ms",
                note=f"{spread(reader, 'single_cpu_ms').as_range('.3f')}; the reader process's CPU time",
            ),
            Row(
                SUITE,
                f"{head}, {BATCH} users: p50",
                spread(reader, "batched_p50").median,
                "ms",
                note=spread(reader, "batched_p50").as_range(".3f"),
            ),
            Row(
                SUITE,
                f"{head}, {BATCH} users: p99",
                batched_p99.median,
                "ms",
                "<= 40" if ours else "",
                batched_p99.median <= 40 if ours else None,
                f"{batched_p99.as_range('.3f')}; {gcs} full (generation-2) GCs in "
                f"{BATCH_CALLS * len(results[reader])} calls over all runs",
            ),
            Row(
                SUITE,
                f"{head}, {BATCH} users: CPU per call",
                spread(reader, "batched_cpu_ms").median,
                "ms",
                note=spread(reader, "batched_cpu_ms").as_range(".3f")
                + (
                    "; answers equal to Feast's (checked on one 100-user call)" if ours else "; the reference"
                ),
            ),
        ]
    for label, field in (("1 user: p99", "single_p99"), (f"{BATCH} users: CPU per call", "batched_cpu_ms")):
        ratio = Spread.of(
            [
                f[field] / max(c[field], 1e-9)
                for c, f in zip(results["churnfs"], results["feast"], strict=True)
            ]
        )
        rows.append(
            Row(
                SUITE,
                f"Feast's store / ours, {label}",
                ratio.median,
                "x",
                note=f"{ratio.as_range('.2f', 'x')}, runs paired in order",
            )
        )
    raw50, raw99 = spread("raw", "single_p50"), spread("raw", "single_p99")
    return [
        *rows,
        Row(
            SUITE,
            "raw HMGET of the same fields, 1 user: p50 / p99",
            f"{raw50.median:.3f} / {raw99.median:.3f}",
            "ms",
            note=f"p99 {raw99.describe('.3f')}; its own process",
        ),
        Row(
            SUITE,
            "Redis memory per user (every materialized view)",
            per_user,
            "bytes",
            note="MEMORY USAGE, 1,000 users",
        ),
    ]


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command != "read" or len(rest) != 5:
        raise SystemExit("usage: python -m bench.online read READER DATA_DIR REPO REDIS USERS")
    reader, data_dir, repo, redis, users = rest
    if reader not in (*READERS, "raw"):
        raise SystemExit(f"unknown reader {reader!r}: {', '.join(READERS)} or raw")
    read(reader, data_dir, repo, redis, int(users))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
