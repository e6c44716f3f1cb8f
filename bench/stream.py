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

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import Row, load_average

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


def _consumer_base(workdir: Path, source: Any, redis_address: str) -> tuple[Path, pa.Table]:
    """The consumers' world: the source's raw tables without the newest days holding the events
    the scenarios need (the demo's hold-back, ``churnfs.stream.replay``), applied; and those events."""
    from churnfs.settings import Settings
    from churnfs.store import apply_repo
    from churnfs.stream.replay import hold_back_events, newest_days_holding

    base = workdir / "stream-consumers-base"
    shutil.rmtree(base, ignore_errors=True)
    start, end = newest_days_holding(source, max(RATE * _seconds(), BACKLOG))
    held = hold_back_events(source, base / "raw", start, end)
    apply_repo(Settings(data_dir=base, redis_connection_string=redis_address))
    return base, held


def _fresh(base: Path, workdir: Path, name: str, redis_address: str) -> Any:
    from churnfs.settings import Settings
    from churnfs.store.redis_servers import redis_client

    data_dir = workdir / name
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(base, data_dir)
    redis_client(redis_address).flushall()
    return Settings(data_dir=data_dir, redis_connection_string=redis_address)


def _paced(base: Path, workdir: Path, held: pa.Table, redis_address: str) -> dict[str, float]:
    from churnfs.store.redis_servers import redis_client
    from churnfs.stream.publish import publish_entries
    from churnfs.stream.replay import finish_consumers, start_consumers, wait_joined
    from churnfs.stream.status import group_lag
    from transformations.stream import encode_events

    settings = _fresh(base, workdir, "stream-paced", redis_address)
    client = redis_client(redis_address)
    entries = encode_events(held.slice(0, RATE * _seconds()))
    consumers = start_consumers(settings, 1, MAX_IDLE_S, settings.data_dir)
    wait_joined(client, settings, 1)
    publish_s = publish_entries(client, settings.stream_key, entries, rate=RATE)
    lag = group_lag(client, settings) or {"unacknowledged": -1}
    (stats,) = finish_consumers(consumers)
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
    from churnfs.stream.replay import finish_consumers, start_consumers
    from transformations.stream import encode_events

    settings = _fresh(base, workdir, f"stream-sustained-{count}", redis_address)
    client = redis_client(redis_address)
    entries = encode_events(held.slice(0, BACKLOG))
    publish_entries(client, settings.stream_key, entries)
    stats = finish_consumers(start_consumers(settings, count, MAX_IDLE_S, settings.data_dir))
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
    server = start_redis_server(workdir / "stream-redis")
    try:
        base, held = _consumer_base(workdir, source, server.address)
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
