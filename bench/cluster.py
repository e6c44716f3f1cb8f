"""Benchmark: one Redis against a 3-master Redis Cluster as the online store, same world, same code.

Both are private servers started here on free loopback ports by ``churnfs.store.redis_servers``
(no persistence), on the machine that runs the benchmark, so they share its cores with the Python
process. Each run, for each target in turn (alternating which goes first):

* ``materialize``: the target is emptied, then the bulk engine loads the world's four online views
  (``FeatureStore.materialize`` in a fresh process, timed in process: no CLI start-up); rows/s per
  view = users over seconds;
* ``read``: ``get_online_features(churn_model_v1).to_dict()`` through ``ChurnRedisOnlineStore``
  in a fresh process, one user per call and 100 users per call (the online suite's calls, the same
  random users for both targets).

The page shows each number's median and range over runs, and the cluster / single ratio.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.common import VENV_BIN, Row, Spread, load_average, marked_line, run_measured
from bench.materialize import build_world, online_view_count
from bench.online import BATCH, SERVICE, _time_calls

SUITE = "cluster"
TARGETS = ("redis", "redis_cluster")
LABELS = {"redis": "one Redis", "redis_cluster": "3-master Redis Cluster"}
MASTERS = 3

MATERIALIZE = """
import json, sys, time
from pathlib import Path
from churnfs.settings import Settings
from churnfs.store import get_store
from churnfs.store.repo import materialization_window
settings = Settings(data_dir=Path(sys.argv[1]), redis_type=sys.argv[2], redis_connection_string=sys.argv[3])
store = get_store(settings)
start, end = materialization_window(settings)
began = time.perf_counter()
store.materialize(start, end)
seconds = time.perf_counter() - began
written = store._get_provider().batch_engine.rows_written
print("MATERIALIZED " + json.dumps({"seconds": seconds, "rows": written}))
"""


def _flush(connection_string: str) -> None:
    """Empty every server of the target (each master of a cluster)."""
    import redis

    from churnfs.store.redis_servers import connection_nodes

    for host, port in connection_nodes(connection_string):
        client = redis.Redis(host=host, port=port)
        client.flushall()
        client.close()


def read(data_dir: str, redis_type: str, connection_string: str, users: int) -> None:
    """Subprocess: time the reads on a fresh heap; prints ``TIMINGS {json}``."""
    from dataclasses import asdict

    from churnfs.settings import Settings
    from churnfs.store import get_store

    settings = Settings(
        data_dir=Path(data_dir), redis_type=redis_type, redis_connection_string=connection_string
    )
    store = get_store(settings)
    timings = _time_calls(store, store.get_feature_service(SERVICE), users)
    print("TIMINGS " + json.dumps({**asdict(timings), "load": load_average()}))


def _python(*args: str) -> list[str]:
    return [str(VENV_BIN / "python"), *args]


def _run_target(data_dir: Path, redis_type: str, connection_string: str, users: int) -> dict[str, Any]:
    """One materialization then one read process against one target."""
    loads = [load_average()]
    _flush(connection_string)
    loaded = run_measured(_python("-c", MATERIALIZE, str(data_dir), redis_type, connection_string))
    materialized = json.loads(marked_line(loaded.stdout, "MATERIALIZED"))
    timed = run_measured(
        _python("-m", "bench.cluster", "read", str(data_dir), redis_type, connection_string, str(users))
    )
    timings = json.loads(marked_line(timed.stdout, "TIMINGS"))
    loads.append(timings.pop("load"))
    return {**timings, **materialized, "loads": loads}


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    """Start one private Redis and one private 3-master cluster, register the world for each, and
    time materialization and reads ``runs`` times on both."""
    from churnfs.store import apply_repo
    from churnfs.store.redis_servers import start_redis_cluster, start_redis_server

    world = build_world(workdir, users)
    server = start_redis_server(workdir / "servers" / "redis")
    cluster = None
    try:
        cluster = start_redis_cluster(workdir / "servers" / "redis-cluster", masters=MASTERS)
        connections = {"redis": server.address, "redis_cluster": cluster.connection_string}
        data_dirs = {}
        for target in TARGETS:
            data_dir = workdir / "worlds" / target
            data_dir.mkdir(parents=True)
            (data_dir / "offline_store").symlink_to(world.offline_store_dir.resolve())
            (data_dir / "raw").symlink_to(world.raw_dir.resolve())
            settings = world.model_copy(
                update={
                    "data_dir": data_dir,
                    "redis_type": target,
                    "redis_connection_string": connections[target],
                }
            )
            apply_repo(settings)
            data_dirs[target] = data_dir
        results: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
        for run_index in range(runs):
            for target in TARGETS if run_index % 2 == 0 else TARGETS[::-1]:
                results[target].append(_run_target(data_dirs[target], target, connections[target], users))
        keys = {t: sum(r["rows"].values()) for t in TARGETS for r in results[t][:1]}
    finally:
        if cluster is not None:
            cluster.stop()
        server.stop()
    return _rows(results, users, keys)


def _rows(results: dict[str, list[dict[str, Any]]], users: int, rows_written: dict[str, int]) -> list[Row]:
    def spread(target: str, field: str) -> Spread:
        return Spread.of([r[field] for r in results[target]])

    views = online_view_count()
    loads = [x for runs in results.values() for r in runs for x in r["loads"]]
    out = [
        Row(
            SUITE,
            "1-min load average before each materialization / after each read process, lowest-highest",
            f"{min(loads):.2f}-{max(loads):.2f}",
            note=f"{os.cpu_count()} cores shared by the Redis servers and the benchmark; "
            f"{len(results['redis'])} run(s) per target, alternating which goes first",
        )
    ]
    for target in TARGETS:
        label = LABELS[target]
        rate = Spread.of([views * users / r["seconds"] for r in results[target]])
        seconds = spread(target, "seconds")
        out += [
            Row(
                SUITE,
                f"{label}: materialize {views} views (bulk engine, in process)",
                seconds.median,
                "s",
                note=f"{seconds.as_range('.2f', ' s')}; {users:,} users, "
                f"{rows_written[target]:,} rows written",
            ),
            Row(
                SUITE,
                f"{label}: materialize rows/s per view",
                rate.median,
                "rows/s",
                note=rate.as_range(".0f"),
            ),
        ]
        for calls, prefix in (("1 user", "single"), (f"{BATCH} users", "batched")):
            p50, p99 = spread(target, f"{prefix}_p50"), spread(target, f"{prefix}_p99")
            out += [
                Row(
                    SUITE,
                    f"{label}: get_online_features {SERVICE}, {calls}: p50",
                    p50.median,
                    "ms",
                    note=p50.as_range(".3f"),
                ),
                Row(
                    SUITE,
                    f"{label}: get_online_features {SERVICE}, {calls}: p99",
                    p99.median,
                    "ms",
                    note=p99.as_range(".3f"),
                ),
            ]
    for name, field, invert in (
        ("materialize rows/s", "seconds", True),
        ("1 user p99", "single_p99", False),
        (f"{BATCH} users p99", "batched_p99", False),
    ):
        pairs = zip(results["redis_cluster"], results["redis"], strict=True)
        ratio = Spread.of([(s[field] / c[field]) if invert else (c[field] / s[field]) for c, s in pairs])
        out.append(
            Row(
                SUITE,
                f"cluster / single, {name}",
                ratio.median,
                "x",
                note=f"{ratio.as_range('.2f', 'x')}, runs paired in order",
            )
        )
    return out


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command != "read" or len(rest) != 4:
        raise SystemExit("usage: python -m bench.cluster read DATA_DIR REDIS_TYPE REDIS USERS")
    data_dir, redis_type, connection_string, users = rest
    read(data_dir, redis_type, connection_string, int(users))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
