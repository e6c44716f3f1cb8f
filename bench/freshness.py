"""Freshness as a client sees it: from an event's ``XADD`` until ``GET /features/{user_id}``
answers with a value that counts the event.

Every ``SAMPLE_EVERY``-th published event is followed. Its user's activity row is polled every
``POLL_S`` seconds from the moment the publisher's pipeline returned the entry's id (whose
``<ms>`` part is the ``XADD`` time); the event is visible once the answer's activity view is as of
a time after the event and its ``total_events`` exceeds what the row could count without it. That
count is known in advance: the raw store the consumer recomputes from holds the world's other
events plus the stream's events published before this one (the publisher sends in time order),
so a row as of ``A`` without the event counts at most the user's usable events of those two kinds
before ``A``. A row with the event counts at least one more. The freshness of an event is the time
the first such answer arrived minus its ``XADD`` time: it includes the consumer's micro-batch, the
online write, the API's read and the poll interval (``POLL_S / 2`` on average).
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

SAMPLE_EVERY = 50
POLL_S = 0.02
GIVE_UP_S = 30.0
ACTIVITY_VIEW = "user_activity_features"


@dataclass(frozen=True)
class Followed:
    """One followed event: its user, time and the user's other usable events it may follow."""

    user_id: int
    event_s: float
    before_s: list[float]  # sorted epoch seconds of the user's events a row without it may count

    def counted_in(self, as_of_s: float, total_events: int) -> bool:
        """Whether a row as of ``as_of_s`` with ``total_events`` counts this event."""
        return as_of_s > self.event_s and total_events > bisect.bisect_left(self.before_s, as_of_s)


def _epoch_s(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()) / 1e6


def followed_events(
    published: pa.Table, usable_published: pa.Table, usable_stored: pa.Table, every: int = SAMPLE_EVERY
) -> dict[int, Followed]:
    """The events to follow, by their index in ``published`` (the publisher's order).

    Args:
        published: the raw events in the order they are published.
        usable_published: the usable (validated) rows of ``published``.
        usable_stored: the usable events already in the consumer's raw store.
    """
    usable_ids = set(usable_published.column("event_id").to_pylist())
    stored: dict[int, list[float]] = defaultdict(list)
    for user, seconds in zip(
        usable_stored.column("user_id").to_pylist(),
        _epoch_s(usable_stored.column("event_timestamp")),
        strict=True,
    ):
        stored[user].append(float(seconds))
    earlier: dict[int, list[float]] = defaultdict(list)  # the user's published events so far
    out: dict[int, Followed] = {}
    ids = published.column("event_id").to_pylist()
    users = published.column("user_id").to_pylist()
    seconds = _epoch_s(published.column("event_timestamp"))
    for index, (event_id, user, event_s) in enumerate(zip(ids, users, seconds, strict=True)):
        if event_id not in usable_ids:
            continue
        if index % every == every // 2:
            out[index] = Followed(int(user), float(event_s), sorted(stored[user] + earlier[user]))
        earlier[user].append(float(event_s))
    return out


@dataclass
class ApiFreshnessProbe:
    """Polls the API for followed events from a thread of its own (an asyncio loop)."""

    base_url: str
    followed: dict[int, Followed]
    poll_s: float = POLL_S
    freshness_ms: list[float] = field(default_factory=list)
    given_up: int = 0
    requests: int = 0
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _client: Any = None
    _tasks: list[Any] = field(default_factory=list)

    def __enter__(self) -> ApiFreshnessProbe:
        import httpx

        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=10)
        self._thread = threading.Thread(target=self._loop.run_forever, name="freshness-probe", daemon=True)
        self._thread.start()
        return self

    def on_sent(self, first: int, entry_ids: list[Any]) -> None:
        """The publisher's hook: start following the followed events among these entries."""
        for offset, entry_id in enumerate(entry_ids):
            target = self.followed.get(first + offset)
            if target is None:
                continue
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            sent_ms = float(text.split("-", 1)[0])
            self._tasks.append(asyncio.run_coroutine_threadsafe(self._follow(target, sent_ms), self._loop))

    async def _follow(self, target: Followed, sent_ms: float) -> None:
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            response = await self._client.get(f"/features/{target.user_id}")
            seen_ms = time.time() * 1000
            self.requests += 1
            if response.status_code == 200:
                body = response.json()
                stamp = (body["views"].get(ACTIVITY_VIEW) or {}).get("event_timestamp")
                total = body["features"].get("total_events")
                if stamp is not None and total is not None:
                    as_of_s = datetime.fromisoformat(stamp).timestamp()
                    if target.counted_in(as_of_s, int(total)):
                        self.freshness_ms.append(seen_ms - sent_ms)
                        return
            await asyncio.sleep(self.poll_s)
        self.given_up += 1

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.result(timeout=GIVE_UP_S + 30)
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()
