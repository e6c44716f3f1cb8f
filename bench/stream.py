"""Benchmark: the stream path (docs/stream.md) on this machine, with Redis, the API, the publisher
and the consumers all running on it.

A world is generated (cached under the work folder) and some weeks of its events are held back
from a copy, the consumers' world, whose registry is applied on a private Redis. Each scenario
starts from a fresh copy and an empty Redis; consumers are ``churnfs stream consume`` processes,
the API is its own uvicorn process on the consumers' world.

* **paced**: one consumer; the held-back events are published at ``RATE`` events/s for
  ``BENCH_STREAM_SECONDS`` seconds (default 60). Freshness p50 and p99 from an event's ``XADD``
  until ``GET /features/{user_id}`` answers with a value that counts it (``bench.freshness``:
  every 50th event is followed, polling every 20 ms), and the consumer's own measure, ``XADD`` to
  its online write, for every event; the group's lag when the publisher finishes.
* **sustained**: a backlog of ``BACKLOG`` events is published first, then 1 or 2 consumers drain
  it while the API process is up (not asked): events per second from the first micro-batch's
  start to the last one's end (start-up and the idle tail excluded).

Each scenario runs ``--runs`` times (default 3); the table gives the median and the range.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import Row, Spread, load_average
from churnfs.world import load_world_spec

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


def _api(settings: Any, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The API on ``settings``' world as a process of its own (``bench.serve``'s)."""
    from bench.serve import API_SCRIPT, HOST, _stop, _wait_http
    from churnfs.store.redis_servers import free_port

    port = free_port(HOST)
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "REDIS_CONNECTION_STRING": settings.redis_connection_string,
        "HOST": HOST,
        "PORT": str(port),
    }
    with open(log_path, "wb") as log:
        command = [sys.executable, "-c", API_SCRIPT]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(port, "/openapi.json", 180, proc)  # /health is 503 here: no model, no offline store
    except BaseException:
        _stop(proc)
        raise
    return proc, f"http://{HOST}:{port}"


def _followed(settings: Any, published: pa.Table) -> dict[int, Any]:
    """The events to follow, with the usable events (the batch job's and the consumer's
    validation) they are counted against."""
    from bench.freshness import followed_events
    from transformations.groups import read_raw_table, validate

    spec = load_world_spec(settings.raw_dir)
    users = validate("user_table", read_raw_table(settings, "user_table"), None, spec).clean
    stored = validate("event_logs", read_raw_table(settings, "event_logs"), users, spec).clean
    return followed_events(published, validate("event_logs", published, users, spec).clean, stored)


def _paced(base: Path, workdir: Path, held: pa.Table, redis_address: str) -> dict[str, float]:
    from bench.freshness import POLL_S, ApiFreshnessProbe
    from bench.serve import _stop
    from churnfs.store.redis_servers import redis_client
    from churnfs.stream.publish import publish_entries
    from churnfs.stream.replay import finish_consumers, start_consumers, wait_joined
    from churnfs.stream.status import group_lag
    from transformations.stream import encode_events

    settings = _fresh(base, workdir, "stream-paced", redis_address)
    client = redis_client(redis_address)
    published = held.slice(0, RATE * _seconds())
    entries = encode_events(published)
    followed = _followed(settings, published)
    api, url = _api(settings, workdir / "stream-paced-api.log")
    try:
        consumers = start_consumers(settings, 1, MAX_IDLE_S, settings.data_dir)
        wait_joined(client, settings, 1)
        with ApiFreshnessProbe(url, followed) as probe:
            publish_s = publish_entries(
                client, settings.stream_key, entries, rate=RATE, on_sent=probe.on_sent
            )
            lag = group_lag(client, settings) or {"unacknowledged": -1}
            (stats,) = finish_consumers(consumers)
    finally:
        _stop(api)
    written = np.asarray(stats["freshness_s"]) * 1000
    seen = np.asarray(probe.freshness_ms)
    if not len(seen):
        raise RuntimeError(f"no followed event became visible through the API ({probe.given_up} gave up)")
    return {
        "events": len(entries),
        "publish_rate": len(entries) / publish_s,
        "api_p50_ms": float(np.percentile(seen, 50)),
        "api_p99_ms": float(np.percentile(seen, 99)),
        "api_max_ms": float(seen.max()),
        "followed": float(len(followed)),
        "seen": float(len(seen)),
        "given_up": float(probe.given_up),
        "poll_ms": POLL_S * 1000,
        "requests_per_s": probe.requests / publish_s,
        "write_p50_ms": float(np.percentile(written, 50)),
        "write_p99_ms": float(np.percentile(written, 99)),
        "lag_at_end": float(lag["unacknowledged"]),
        "batches": float(stats["batches"]),
    }


def _sustained(base: Path, workdir: Path, held: pa.Table, redis_address: str, count: int) -> dict[str, float]:
    from bench.serve import _stop
    from churnfs.store.redis_servers import redis_client
    from churnfs.stream.publish import publish_entries
    from churnfs.stream.replay import finish_consumers, start_consumers
    from transformations.stream import encode_events

    settings = _fresh(base, workdir, f"stream-sustained-{count}", redis_address)
    client = redis_client(redis_address)
    entries = encode_events(held.slice(0, BACKLOG))
    publish_entries(client, settings.stream_key, entries)
    api, _ = _api(settings, workdir / f"stream-sustained-{count}-api.log")  # up, not asked
    try:
        stats = finish_consumers(start_consumers(settings, count, MAX_IDLE_S, settings.data_dir))
    finally:
        _stop(api)
    first = min(s["first_batch_at"] for s in stats if s["first_batch_at"])
    last = max(s["last_batch_at"] for s in stats if s["last_batch_at"])
    total = sum(s["entries"] for s in stats)
    return {
        "events": float(total),
        "events_per_s": total / (last - first),
        "shares": float(min(s["entries"] for s in stats) / max(1, total)),
    }


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    from churnfs.store.redis_servers import start_redis_server

    source = _source_world(workdir, users)
    server = start_redis_server(workdir / "stream-redis")
    paced: list[dict[str, float]] = []
    one: list[dict[str, float]] = []
    two: list[dict[str, float]] = []
    loads = [load_average()]
    try:
        base, held = _consumer_base(workdir, source, server.address)
        for _ in range(runs):
            paced.append(_paced(base, workdir, held, server.address))
            one.append(_sustained(base, workdir, held, server.address, 1))
            two.append(_sustained(base, workdir, held, server.address, 2))
            loads.append(load_average())
    finally:
        server.stop()

    def spread(rows: list[dict[str, float]], key: str) -> Spread:
        return Spread.of([row[key] for row in rows])

    seconds = _seconds()
    last = paced[-1]
    api_p50, api_p99 = spread(paced, "api_p50_ms"), spread(paced, "api_p99_ms")
    write_p50, write_p99 = spread(paced, "write_p50_ms"), spread(paced, "write_p99_ms")
    one_rate, two_rate = spread(one, "events_per_s"), spread(two, "events_per_s")
    lags = ", ".join(f"{r['lag_at_end']:.0f}" for r in paced)
    followed = (
        f"{last['seen']:.0f} of {last['followed']:.0f} followed events seen in the last run "
        f"({last['given_up']:.0f} gave up after 30 s), polled every {last['poll_ms']:.0f} ms "
        f"({last['requests_per_s']:.0f} requests/s)"
    )
    return [
        Row(SUITE, "world", f"{users:,} users, {held.num_rows:,} events held back", "", "", None, ""),
        Row(
            SUITE,
            f"freshness p50 at {RATE:,} events/s, XADD to GET /features",
            round(api_p50.median, 1),
            "ms",
            "",
            None,
            f"{api_p50.as_range('.0f', ' ms')}; {last['events']:,.0f} events over {seconds} s "
            f"(published at {last['publish_rate']:,.0f}/s), 1 consumer, the API serving; {followed}",
        ),
        Row(
            SUITE,
            f"freshness p99 at {RATE:,} events/s, XADD to GET /features",
            round(api_p99.median, 1),
            "ms",
            "<= 1,000 (stretch 250)",
            api_p99.high <= 1000,
            f"{api_p99.as_range('.0f', ' ms')}; max {max(r['api_max_ms'] for r in paced):,.0f} ms",
        ),
        Row(
            SUITE,
            f"freshness p50 / p99 at {RATE:,} events/s, XADD to online write",
            f"{write_p50.median:.0f} / {write_p99.median:.0f}",
            "ms",
            "",
            None,
            f"the consumer's own measure, every event; p50 {write_p50.as_range('.0f')}, "
            f"p99 {write_p99.as_range('.0f')}; unacknowledged when the publisher stopped: "
            f"{lags}",
        ),
        Row(
            SUITE,
            "sustained events/s, 1 consumer",
            round(one_rate.median),
            "events/s",
            "",
            None,
            f"{one_rate.as_range('.0f')}; a backlog of {one[-1]['events']:,.0f} events drained "
            "with the API up, first batch to last",
        ),
        Row(
            SUITE,
            "sustained events/s, 2 consumers",
            round(two_rate.median),
            "events/s",
            ">= 5,000",
            two_rate.low >= 5000,
            f"{two_rate.as_range('.0f')}; same backlog; the smaller consumer took "
            f"{min(r['shares'] for r in two):.0%}-{max(r['shares'] for r in two):.0%} of the entries",
        ),
        Row(
            SUITE,
            "load average (1 min) before / after each run",
            " / ".join(f"{x:.1f}" for x in loads),
            "",
            "",
            None,
            "",
        ),
    ]
