"""``churnfs stream consume``: one member of the consumer group that turns stream entries into
fresh activity features.

Per micro-batch (at most ``STREAM_BATCH_SIZE`` entries, gathered for at most ``STREAM_BATCH_MS``
after the first one came):

1. decode and validate every entry with the batch job's checks; entries that are no event or
   fail a check go to the stream's quarantine with their reason;
2. under the group's write lock: append the events not yet in the raw store (by ``event_id``) as
   a durable part beside ``raw/event_logs.parquet``; recompute the users of the batch's events as
   of the batch's newest event (never before the stream's clock, the latest as-of time written)
   with the batch job's functions; append the rows to the offline store and write them online
   (``churnfs.store.online_rows``: the bytes Feast's push would write); advance the clock;
3. ``XACK`` every entry of the batch.

A crash anywhere before step 3 leaves the entries pending: they are delivered again (to this
consumer after a reconnect, to a peer through ``XAUTOCLAIM`` once idle for
``STREAM_CLAIM_IDLE_MS``), and the event-id check makes the second pass add nothing twice, while
the recompute (a pure function of the raw store) pushes the same values again. Delivery is at
least once; processing is idempotent.

Why one lock: two consumers recomputing the same user could otherwise push in the opposite order
to the one they read the raw store in, leaving a value that misses the other's events. Under the
lock, the last push of a user always follows every append made before it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnfs.errors import MissingDataError
from churnfs.settings import Settings
from churnfs.store.parts import append_part, part_name
from churnfs.store.redis_servers import redis_client
from churnfs.stream.metrics import StreamMetrics
from churnfs.stream.raw_store import RawEventStore
from churnfs.world import load_world_spec
from transformations.groups import read_raw_table, validate
from transformations.job import with_created_timestamp
from transformations.stream import (
    ACTIVITY_VIEW,
    STREAM_ID,
    activity_rows,
    decode_entries,
    drop_known_events,
    quarantine_rows,
    stream_as_of,
)

if TYPE_CHECKING:
    from churnfs.store.online_rows import OnlineRowWriter

logger = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]


def consumer_name() -> str:
    """This process's name in the group: host and pid (a restarted process is a new consumer)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def clock_key(settings: Settings) -> str:
    """The Redis key holding the stream's clock (ISO 8601): the latest as-of time written."""
    return f"{settings.stream_key}:clock"


def lock_key(settings: Settings) -> str:
    return f"{settings.stream_key}:lock"


def ensure_group(client: Any, settings: Settings) -> bool:
    """Create the consumer group (reading from the stream's start) unless it exists; True if created."""
    import redis

    try:
        client.xgroup_create(settings.stream_key, settings.stream_group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


def entry_millis(stream_ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The publish time (Unix ms) in each entry id ``<ms>-<seq>``."""
    parts = pc.split_pattern(stream_ids, "-", max_splits=1)
    return np.asarray(pc.list_element(parts, 0).cast(pa.int64()).to_numpy(zero_copy_only=False))


@contextmanager
def _lease_kept(lock: Any, lease_s: float) -> Iterator[None]:
    """Renew ``lock``'s lease every third of it while the block runs, so a slow write phase (a
    large batch, a busy machine) keeps the lock; the lease only bounds how long a killed holder
    blocks the others. A renewal that fails (the lease ran out, Redis is gone) is left to the
    release, which then raises ``LockError`` and the batch runs again."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(lease_s / 3):
            try:
                lock.reacquire()
            except Exception as exc:  # LockNotOwnedError, a lost connection
                logger.warning("could not renew the write lock: %s", exc)
                return

    keeper = threading.Thread(target=renew, name="stream-lock-lease", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()


@dataclass
class ConsumerStats:
    """What this consumer did since it started."""

    batches: int = 0
    entries: int = 0
    events_appended: int = 0
    repeats: int = 0
    claimed: int = 0
    quarantined: int = 0
    failed_batches: int = 0
    users_pushed: int = 0
    freshness_s: list[float] = field(default_factory=list)
    """Seconds from each new event's XADD to its user's online write."""
    first_batch_at: float | None = None
    """Unix time the first micro-batch began (throughput excludes start-up and idle tails)."""
    last_batch_at: float | None = None
    """Unix time the last micro-batch ended."""

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "batches": self.batches,
            "entries": self.entries,
            "events appended": self.events_appended,
            "repeats skipped": self.repeats,
            "taken over from peers": self.claimed,
            "quarantined": self.quarantined,
            "failed batches": self.failed_batches,
            "user rows pushed": self.users_pushed,
        }
        if self.freshness_s:
            p50, p99 = np.percentile(self.freshness_s, [50, 99])
            out["freshness p50 / p99 (s)"] = f"{p50:.3f} / {p99:.3f}"
        return out


class StreamConsumer:
    """One consumer of ``settings.stream_group`` on ``settings.stream_key``."""

    def __init__(
        self, settings: Settings, name: str | None = None, metrics: StreamMetrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.name = name or consumer_name()
        self.client = redis_client(settings.redis_connection_string, timeout_s=10.0)
        self.spec = load_world_spec(settings.raw_dir)
        self.users = validate("user_table", read_raw_table(settings, "user_table"), None, self.spec).clean
        self.raw = RawEventStore(settings, self.users, self.spec)
        self.raw.refresh()
        self.stats = ConsumerStats()
        self._own_pending = True  # first re-deliver what this name still holds (after a reconnect)
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._writer: OnlineRowWriter | None = None
        self._materialized_end: datetime | None = None
        self._batch_number = 0

    # --- reading ------------------------------------------------------------------------------

    def _xreadgroup(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        reply = self.client.xreadgroup(
            self.settings.stream_group,
            self.name,
            {self.settings.stream_key: start},
            count=count,
            block=block_ms,
        )
        return list(reply[0][1]) if reply else []

    def _claim(self) -> list[Entry]:
        """A dead peer's entries, pending longer than ``stream_claim_idle_ms`` (XAUTOCLAIM)."""
        settings = self.settings
        reply = self.client.xautoclaim(
            settings.stream_key,
            settings.stream_group,
            self.name,
            settings.stream_claim_idle_ms,
            start_id=self._claim_cursor,
            count=settings.stream_batch_size,
        )
        cursor, claimed = reply[0], reply[1]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
        if self._claim_cursor == "0-0" or not entries:
            self._next_claim = time.monotonic() + max(0.2, settings.stream_claim_idle_ms / 4000)
        if entries:
            self.stats.claimed += len(entries)
            logger.info("%s took over %d entries of a silent peer", self.name, len(entries))
        return entries

    def next_batch(self, block_ms: int = 1000) -> list[Entry]:
        """The next micro-batch: this consumer's own pending entries first, then a dead peer's,
        then new entries (waiting up to ``block_ms`` for the first)."""
        settings = self.settings
        if self._own_pending:
            entries = self._xreadgroup("0", settings.stream_batch_size, None)
            if entries:
                return entries
            self._own_pending = False
        if time.monotonic() >= self._next_claim:
            entries = self._claim()
            if entries:
                return entries
        entries = self._xreadgroup(">", settings.stream_batch_size, block_ms)
        if not entries:
            return entries
        deadline = time.monotonic() + settings.stream_batch_ms / 1000
        while len(entries) < settings.stream_batch_size:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = self._xreadgroup(">", settings.stream_batch_size - len(entries), left_ms)
            if not more:
                break
            entries.extend(more)
        return entries

    # --- writing ------------------------------------------------------------------------------

    def _feast(self) -> OnlineRowWriter:
        """The writer of the activity view's online rows, made once: Feast's store (its registry
        read once, the view looked up once) with the bulk engine's encoder, replacing a stored row
        of the same event time (``skip_dedup``: a later micro-batch recomputes a user as of the
        same second with more events)."""
        if self._writer is None:
            from feast.errors import FeatureViewNotFoundException

            from churnfs.store import get_store
            from churnfs.store.online_rows import OnlineRowWriter

            store = get_store(self.settings, check_online=False)
            store.config.online_store.skip_dedup = True
            writer = OnlineRowWriter(store)
            try:
                view = writer.view(ACTIVITY_VIEW)
            except FeatureViewNotFoundException:
                raise MissingDataError(
                    f"{ACTIVITY_VIEW} is not in the registry {self.settings.registry_path}: run `make apply`"
                ) from None
            if getattr(view, "stream_source", None) is None:
                raise MissingDataError(
                    f"{ACTIVITY_VIEW} has no push source in the registry: run `make apply`"
                )
            end = view.most_recent_end_time
            self._materialized_end = end.astimezone(UTC) if end is not None else None
            self._writer = writer
        return self._writer

    def _clock(self) -> datetime | None:
        value = self.client.get(clock_key(self.settings))
        clock = datetime.fromisoformat(value.decode()) if value else None
        floor = self._materialized_end  # never write below what materialize loaded
        if floor is not None and (clock is None or floor > clock):
            clock = min(floor, self.spec.end)
        return clock

    def _push(self, rows: pa.Table, as_of: datetime) -> None:
        """Append the recomputed rows to the offline store, then write them online (the bytes
        Feast's push through ``user_activity_push`` would write)."""
        writer = self._feast()
        group_file = self.settings.offline_store_dir / f"{ACTIVITY_VIEW}.parquet"
        created = datetime.now(UTC)
        table = with_created_timestamp(rows, created)
        label = f"stream-{self.name}-{self._batch_number}"
        append_part(group_file, table, part_name(as_of, created, label))
        writer.write(ACTIVITY_VIEW, table)

    def process(self, entries: list[Entry]) -> int:
        """Process one micro-batch and acknowledge it; returns how many events were new."""
        if not entries:
            return 0
        settings = self.settings
        self._batch_number += 1
        decoded = decode_entries(entries)
        events = decoded.events
        quarantined = [quarantine_rows(decoded.malformed)]
        clean_raw = events.slice(0, 0)
        clean = None
        if events.num_rows:
            split = validate("event_logs", events, self.users, self.spec)
            quarantined.append(quarantine_rows(split.quarantined))
            clean = split.clean
            clean_raw = events.filter(pc.is_in(events.column("event_id"), value_set=clean.column("event_id")))
        bad = pa.concat_tables(quarantined)
        label = f"{self.name}-{self._batch_number}"
        if bad.num_rows:
            self.raw.append_quarantine(bad, label)
            logger.warning(
                "%d stream entries quarantined: %s",
                bad.num_rows,
                sorted(set(bad.column("reason").to_pylist())),
            )
        new_events = 0
        if clean_raw.num_rows:
            from redis.lock import Lock

            # not thread-local: the lease keeper renews it from its own thread
            lock = Lock(
                self.client, lock_key(settings), timeout=settings.stream_lock_timeout_s, thread_local=False
            )
            with lock, _lease_kept(lock, settings.stream_lock_timeout_s):
                self.raw.refresh()  # a peer's appends since the last batch
                dedup = drop_known_events(clean_raw, self.raw.known_ids)
                newest = pc.max(clean_raw.column("event_timestamp")).as_py()
                if dedup.new.num_rows:
                    assert clean is not None
                    # validated above: the raw store takes the same events' clean rows as they are
                    stored_clean = drop_known_events(clean, self.raw.known_ids).new
                    self.raw.append_events(dedup.new, newest, label, clean=stored_clean)
                as_of = stream_as_of(newest, self._clock(), self.spec.end)
                user_ids = pc.unique(clean_raw.column("user_id")).to_pylist()
                events = self.raw.clean_events(user_ids)
                rows = activity_rows(settings, self.users, events, user_ids, as_of)
                if rows.num_rows:
                    self._push(rows, as_of)
                self.client.set(clock_key(settings), as_of.isoformat())
            written_ms = time.time() * 1000
            new_events = dedup.new.num_rows
            self.stats.events_appended += new_events
            self.stats.repeats += dedup.repeats
            self.stats.users_pushed += rows.num_rows
            if new_events:
                sent = entry_millis(dedup.new.column(STREAM_ID))
                freshness = ((written_ms - sent) / 1000).tolist()
                self.stats.freshness_s.extend(freshness)
                if self.metrics is not None:
                    for seconds in freshness:
                        self.metrics.freshness.observe(seconds)
            if self.metrics is not None:
                self.metrics.events.labels(outcome="processed").inc(new_events)
                self.metrics.events.labels(outcome="repeat").inc(dedup.repeats)
        ids = [entry_id for entry_id, _ in entries]
        self.client.xack(settings.stream_key, settings.stream_group, *ids)
        self.stats.batches += 1
        self.stats.entries += len(entries)
        self.stats.quarantined += bad.num_rows
        if self.metrics is not None:
            self.metrics.events.labels(outcome="quarantined").inc(bad.num_rows)
            self.metrics.batches.labels(outcome="ok").inc()
            self._observe_lag()
        return new_events

    def _observe_lag(self) -> None:
        from churnfs.stream.status import group_lag

        if self.metrics is not None:
            lag = group_lag(self.client, self.settings)
            self.metrics.lag.set(lag["unacknowledged"] if lag else 0)

    def _failed(self) -> None:
        self.stats.failed_batches += 1
        if self.metrics is not None:
            self.metrics.batches.labels(outcome="failed").inc()

    # --- the loop -----------------------------------------------------------------------------

    def run(
        self, max_idle_s: float | None = None, should_stop: Callable[[], bool] | None = None
    ) -> ConsumerStats:
        """Consume until ``should_stop()`` says so, or until nothing came for ``max_idle_s``
        seconds (None: forever). A lost Redis is waited for; its pending entries are delivered
        again once it is back."""
        import redis
        from redis.exceptions import LockError

        self._feast()  # Feast's import and registry load take seconds: never under the write lock
        backoff = 0.2
        idle_since = time.monotonic()
        created = False
        while should_stop is None or not should_stop():
            try:
                if not created:
                    ensure_group(self.client, self.settings)
                    created = True
                entries = self.next_batch(block_ms=500)
                if entries:
                    if self.stats.first_batch_at is None:
                        self.stats.first_batch_at = time.time()
                    self.process(entries)
                    self.stats.last_batch_at = time.time()
                    idle_since = time.monotonic()
                else:
                    if self.metrics is not None:
                        self._observe_lag()
                    if max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                        break
                backoff = 0.2
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                logger.warning("Redis unreachable (%s): retrying in %.1f s", exc, backoff)
                self._own_pending = True
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except LockError as exc:
                # the lease ran out under the write phase (a Redis restart, or a batch slower than
                # STREAM_LOCK_TIMEOUT_S): a peer may have written meanwhile, so the batch runs again
                self._failed()
                logger.warning("the write lock was lost mid-batch (%s): processing the batch again", exc)
                self._own_pending = True
            except Exception:
                # a batch that cannot be processed stays pending: this consumer retries it
                self._failed()
                logger.exception("a micro-batch failed; its entries stay pending and are retried")
                self._own_pending = True
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return self.stats
