"""``churnfs stream publish``: replay a world's raw events into the stream, in time order.

Each entry is one raw ``event_logs`` row (``transformations.stream.encode_events``). With a
``speed`` of N the replay keeps N times the events' own pace (an hour of events in 3.6 s at
1,000x); with ``rate`` it sends that many events per second; with neither, as fast as Redis
takes them (pipelines of ``CHUNK`` entries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow as pa

from churnfs.errors import InvalidInputError
from churnfs.settings import Settings
from churnfs.store.redis_servers import redis_client
from transformations.groups import raw_table_files
from transformations.stream import encode_events
from transformations.validation import RAW_SCHEMAS, connect

logger = logging.getLogger(__name__)

CHUNK = 500
"""Entries per pipeline when sending as fast as possible."""


def events_between(settings: Settings, start: datetime, end: datetime) -> pa.Table:
    """The raw events of a world (file and stream parts) with ``start <= time < end``, ordered by
    time then ``event_id``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInputError("--from and --to must be timezone-aware (UTC)")
    if end <= start:
        raise InvalidInputError(f"--to {end.isoformat()} must be after --from {start.isoformat()}")
    columns = ", ".join(f'"{c}"' for c in RAW_SCHEMAS["event_logs"])
    paths = [str(p) for p in raw_table_files(settings, "event_logs")]
    with connect() as con:
        return con.sql(
            f"""SELECT {columns} FROM read_parquet($paths, union_by_name = true)
            WHERE event_timestamp >= $start AND event_timestamp < $end
            ORDER BY event_timestamp, event_id""",
            params={"paths": paths, "start": start, "end": end},
        ).to_arrow_table()


def publish_entries(
    client: Any,
    key: str,
    entries: list[dict[str, str]],
    times_s: list[float] | None = None,
    speed: float | None = None,
    rate: float | None = None,
    on_sent: Callable[[int, list[Any]], None] | None = None,
) -> float:
    """XADD ``entries`` to ``key`` in order, paced by ``speed`` (over ``times_s``, the events'
    own times in seconds) or ``rate`` (events per second), else as fast as possible. Returns
    the seconds it took.

    Args:
        on_sent: called after each pipeline with the index of its first entry and the entry ids
            Redis gave them (``<ms>-<seq>``: the publish time), e.g. to follow events downstream.
    """
    started = time.perf_counter()

    def send(i: int, j: int) -> None:
        pipe = client.pipeline(transaction=False)
        for entry in entries[i:j]:
            pipe.xadd(key, entry)
        ids = pipe.execute()
        if on_sent is not None:
            on_sent(i, ids)

    if speed is None and rate is None:
        for i in range(0, len(entries), CHUNK):
            send(i, min(i + CHUNK, len(entries)))
        return time.perf_counter() - started
    if speed is not None and times_s is None:
        raise ValueError("pacing by speed needs the events' times")
    first = times_s[0] if times_s else 0.0

    def due(k: int) -> float:  # seconds after the start at which entry k goes out
        if speed is not None and times_s is not None:
            return (times_s[k] - first) / speed
        return k / (rate or 1.0)

    i = 0
    while i < len(entries):
        now = time.perf_counter() - started
        j = i
        while j < len(entries) and due(j) <= now:  # everything due goes in one pipeline
            j += 1
        if j == i:
            time.sleep(min(due(i) - now, 0.05))
            continue
        send(i, j)
        i = j
    return time.perf_counter() - started


def publish_events(
    settings: Settings,
    start: datetime,
    end: datetime,
    speed: float | None = None,
    rate: float | None = None,
    source: Settings | None = None,
) -> dict[str, object]:
    """Publish the events of ``source``'s world (default: this one) in ``[start, end)`` to
    ``settings.stream_key`` on ``settings``' Redis; returns a summary."""
    if speed is not None and speed <= 0:
        raise InvalidInputError("--speed must be > 0 (leave it out to send as fast as possible)")
    events = events_between(source or settings, start, end)
    entries = encode_events(events)
    times = (events.column("event_timestamp").cast(pa.int64()).to_numpy() / 1e6).tolist()
    client = redis_client(settings.redis_connection_string)
    seconds = publish_entries(client, settings.stream_key, entries, times, speed=speed, rate=rate)
    logger.info("published %d events to %s in %.2f s", len(entries), settings.stream_key, seconds)
    return {
        "stream": settings.stream_key,
        "events": len(entries),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "seconds": round(seconds, 2),
        "events/s": round(len(entries) / seconds) if seconds > 0 else len(entries),
    }
