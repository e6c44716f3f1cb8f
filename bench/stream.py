"""Benchmark: the stream path (docs/stream.md) on this machine, with Redis, the publisher and the
consumers all running on it.

A world is generated (cached under the work folder) and some weeks of its events are held back
from a copy, the consumers' world, whose registry is applied on a private Redis. Each scenario
starts from a fresh copy and an empty Redis; consumers are ``churnfs stream consume`` processes.

* **paced**: one consumer; the held-back events are published at ``RATE`` events/s for
  ``BENCH_STREAM_SECONDS`` seconds (default 60): freshness p50 and p99 from each event's
  ``XADD`` to its user's online write (the consumer's own measure: it does not include a read
  through the API), and the group's lag when the publisher finishes.
* **sustained**: a backlog of ``BACKLOG`` events is published first, then 1 or 2 consumers drain
  it: events per second from the first micro-batch's start to the last one's end (start-up and
  the idle tail excluded).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import VENV_BIN, Row, load_average

SUITE = "stream"
RATE = 1000
BACKLOG = 30_000
MAX_IDLE_S = 5


def _seconds() -> int:
    return int(os.environ.get("BENCH_STREAM_SECONDS", "60"))


def _source_world(workdir: Path, users: int) -> Any:
    from churnfs.settings import Settings
    from datagen import generate_world

    settings = Settings(data_dir=workdir / f"stream-source-{users}")
    if not (settings.raw_dir / "_world.json").exists():
        generate_world(settings, users=users, seed=42, drift=True, show_progress=False)
    return settings


def _held_back(source: Any, needed: int) -> pa.Table:
    """The newest whole days of events before the world's last day holding at least ``needed``
    events, in time order."""
    from churnfs.world import load_world_spec

    spec = load_world_spec(source.raw_dir)
    events = pq.read_table(source.raw_dir / "event_logs.parquet")
    times = events.column("event_timestamp")
    end = spec.end - timedelta(days=1)
    start = end
    while True:
        start -= timedelta(days=1)
        window = pc.and_(
            pc.greater_equal(times, pa.scalar(start, times.type)), pc.less(times, pa.scalar(end, times.type))
        )
        if pc.sum(window).as_py() >= needed or start <= spec.start:
            break
    return events.filter(window).sort_by([("event_timestamp", "ascending"), ("event_id", "ascending")])


def _consumer_base(workdir: Path, source: Any, held: pa.Table, redis_address: str) -> Path:
    """The consumers' world: the source's raw tables without the held-back events, applied."""
    from churnfs.settings import Settings
    from churnfs.store import apply_repo

    base = workdir / "stream-consumers-base"
    shutil.rmtree(base, ignore_errors=True)
    (base / "raw").mkdir(parents=True)
    for path in source.raw_dir.iterdir():
        if path.is_file() and path.name != "event_logs.parquet":
            shutil.copy(path, base / "raw" / path.name)
    events = pq.read_table(source.raw_dir / "event_logs.parquet")
    held_ids = held.column("event_id")
    pq.write_table(
        events.filter(pc.invert(pc.is_in(events.column("event_id"), value_set=held_ids))),
        base / "raw" / "event_logs.parquet",
    )
    apply_repo(Settings(data_dir=base, redis_connection_string=redis_address))
    return base


def _fresh(base: Path, workdir: Path, name: str, redis_address: str) -> Any:
    from churnfs.settings import Settings
    from churnfs.store.redis_servers import redis_client

    data_dir = workdir / name
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(base, data_dir)
    redis_client(redis_address).flushall()
    return Settings(data_dir=data_dir, redis_connection_string=redis_address)


def _start_consumers(settings: Any, count: int) -> list[tuple[subprocess.Popen[bytes], Path]]:
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "REDIS_CONNECTION_STRING": settings.redis_connection_string,
    }
    out = []
    for i in range(count):
        stats = settings.data_dir / f"consumer-{i}.json"
        command = [str(VENV_BIN / "churnfs"), "stream", "consume", "--max-idle", str(MAX_IDLE_S)]
        process = subprocess.Popen(
            [*command, "--stats-json", str(stats)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        out.append((process, stats))
    return out


def _wait_joined(client: Any, settings: Any, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` consumers are in the group (each joins with its first read)."""
    from churnfs.stream.consumer import ensure_group

    ensure_group(client, settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(client.xinfo_consumers(settings.stream_key, settings.stream_group)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} consumers did not join within {timeout_s} s")


def _finish(consumers: list[tuple[subprocess.Popen[bytes], Path]]) -> list[dict[str, Any]]:
    stats = []
    for process, path in consumers:
        if process.wait(timeout=1800) != 0:
            raise RuntimeError(f"a consumer exited with {process.returncode}")
        stats.append(json.loads(path.read_text()))
    return stats


def _paced(base: Path, workdir: Path, held: pa.Table, redis_address: str) -> dict[str, float]:
    from churnfs.store.redis_servers import redis_client
    from churnfs.stream.publish import publish_entries
    from churnfs.stream.status import group_lag
    from transformations.stream import encode_events

    settings = _fresh(base, workdir, "stream-paced", redis_address)
    client = redis_client(redis_address)
    entries = encode_events(held.slice(0, RATE * _seconds()))
    consumers = _start_consumers(settings, 1)
    _wait_joined(client, settings, 1)
    publish_s = publish_entries(client, settings.stream_key, entries, rate=RATE)
    lag = group_lag(client, settings) or {"unacknowledged": -1}
    (stats,) = _finish(consumers)
    freshness = np.asarray(stats["freshness_s"]) * 1000
    return {
        "events": len(entries),
        "publish_rate": len(entries) / publish_s,
        "p50_ms": float(np.percentile(freshness, 50)),
        "p99_ms": float(np.percentile(freshness, 99)),
        "max_ms": float(freshness.max()),
        "lag_at_end": float(lag["unacknowledged"]),
        "batches": float(stats["batches"]),
    }


def _sustained(base: Path, workdir: Path, held: pa.Table, redis_address: str, count: int) -> dict[str, float]:
    from churnfs.store.redis_servers import redis_client
    from churnfs.stream.publish import publish_entries
    from transformations.stream import encode_events

    settings = _fresh(base, workdir, f"stream-sustained-{count}", redis_address)
    client = redis_client(redis_address)
    entries = encode_events(held.slice(0, BACKLOG))
    publish_entries(client, settings.stream_key, entries)
    stats = _finish(_start_consumers(settings, count))
    first = min(s["first_batch_at"] for s in stats if s["first_batch_at"])
    last = max(s["last_batch_at"] for s in stats if s["last_batch_at"])
    total = sum(s["entries"] for s in stats)
    return {
        "events": float(total),
        "events_per_s": total / (last - first),
        "shares": float(min(s["entries"] for s in stats) / max(1, total)),
    }


def run(workdir: Path, users: int) -> list[Row]:
    from churnfs.store.redis_servers import start_redis_server

    source = _source_world(workdir, users)
    held = _held_back(source, max(RATE * _seconds(), BACKLOG))
    server = start_redis_server(workdir / "stream-redis")
    try:
        base = _consumer_base(workdir, source, held, server.address)
        load_before = load_average()
        paced = _paced(base, workdir, held, server.address)
        one = _sustained(base, workdir, held, server.address, 1)
        two = _sustained(base, workdir, held, server.address, 2)
        load_after = load_average()
    finally:
        server.stop()
    seconds = _seconds()
    note = (
        f"{paced['events']:,.0f} events over {seconds} s (published at {paced['publish_rate']:,.0f}/s), "
        f"1 consumer, {paced['batches']:.0f} micro-batches; XADD to online write"
    )
    return [
        Row(SUITE, "world", f"{users:,} users, {held.num_rows:,} events held back", "", "", None, ""),
        Row(SUITE, f"freshness p50 at {RATE:,} events/s", round(paced["p50_ms"], 1), "ms", "", None, note),
        Row(
            SUITE,
            f"freshness p99 at {RATE:,} events/s",
            round(paced["p99_ms"], 1),
            "ms",
            "<= 1,000 (stretch 250)",
            paced["p99_ms"] <= 1000,
            f"max {paced['max_ms']:,.0f} ms; unacknowledged when the publisher stopped: "
            f"{paced['lag_at_end']:.0f}",
        ),
        Row(
            SUITE,
            "sustained events/s, 1 consumer",
            round(one["events_per_s"]),
            "events/s",
            "",
            None,
            f"a backlog of {one['events']:,.0f} events drained, first batch to last",
        ),
        Row(
            SUITE,
            "sustained events/s, 2 consumers",
            round(two["events_per_s"]),
            "events/s",
            ">= 5,000",
            two["events_per_s"] >= 5000,
            f"same backlog; the smaller consumer took {two['shares']:.0%} of the entries",
        ),
        Row(
            SUITE,
            "load average (1 min) before / after",
            f"{load_before:.1f} / {load_after:.1f}",
            "",
            "",
            None,
            "",
        ),
    ]
