"""``churnfs stream demo`` (``make stream-demo``): the stream path end to end on a generated world.

The full world is generated under ``DATA_DIR/stream-source``. The served world (``DATA_DIR``) is
generated with ``--end`` some weeks earlier, and the batch pipeline runs on it as usual (features,
apply, materialize up to its end). Then its end moves forward: its raw tables become the full
world's without the events from the old end on (``churnfs.stream.replay.hold_back_events``, the
benchmark's hold-back; the two worlds agree row for row before the earlier end), so the stream
validates those events against a calendar that covers them. The API serves while consumer
processes follow those events, published at ``speed`` times their own pace; once the stream is
drained every touched user's online activity row is compared with a batch recompute from the raw
store as of the same time, and ``check-consistency`` runs.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from churnfs.settings import Settings
from churnfs.store.consistency import ConsistencyReport
from churnfs.store.errors import ConsistencyError
from churnfs.stream.location import stream_settings
from churnfs.world import load_world_spec

logger = logging.getLogger(__name__)

SOURCE_DIR = "stream-source"
"""The full world's folder inside ``DATA_DIR``."""
DEMO_DIR = "stream-demo"
"""Where the consumers' stats and logs go inside ``DATA_DIR``."""


def _same(online: Any, batch: Any) -> bool:
    if isinstance(batch, list):
        return (
            isinstance(online, list)
            and len(online) == len(batch)
            and all(_same(o, b) for o, b in zip(online, batch, strict=True))
        )
    if isinstance(batch, float):
        return online is not None and math.isclose(float(online), batch, rel_tol=1e-6, abs_tol=1e-9)
    return bool(online == batch)


def online_batch_mismatches(settings: Settings, user_ids: Sequence[int]) -> tuple[int, list[str]]:
    """Compare each user's online activity row with the batch job's recompute from the raw store
    on disk (``transformations.stream.recompute_activity``'s steps) as of that row's event time;
    returns how many users were compared and the mismatches (``user feature: online != batch``)."""
    from churnfs.store import get_store
    from transformations.activity import ACTIVITY_COLUMNS
    from transformations.groups import read_raw_table, validate
    from transformations.stream import ACTIVITY_VIEW, activity_rows

    store = get_store(settings, check_online=False)
    ids = sorted({int(u) for u in user_ids})
    columns = store.get_online_features(
        features=[f"{ACTIVITY_VIEW}:{c}" for c in ACTIVITY_COLUMNS],
        entity_rows=[{"user_id": u} for u in ids],
    ).to_dict(include_event_timestamps=True)
    at: dict[datetime, list[int]] = defaultdict(list)
    for i in range(len(ids)):
        seconds = max((columns[f"{c}__ts"][i] or 0) for c in ACTIVITY_COLUMNS)
        if seconds:
            at[datetime.fromtimestamp(seconds, tz=UTC)].append(i)
    spec = load_world_spec(settings.raw_dir)
    users = validate("user_table", read_raw_table(settings, "user_table"), None, spec).clean
    # recompute_activity's steps, with the reading and validation done once for every as-of time
    raw = read_raw_table(settings, "event_logs", user_ids=ids)
    events = validate("event_logs", raw, users, spec).clean
    mismatches: list[str] = []
    for as_of, rows in sorted(at.items()):
        recomputed = activity_rows(settings, users, events, [ids[i] for i in rows], as_of)
        batch = {r["user_id"]: r for r in recomputed.to_pylist()}
        for i in rows:
            expected = batch.get(ids[i])
            for name in ACTIVITY_COLUMNS:
                value = columns[name][i]
                if expected is None or not _same(value, expected[name]):
                    wanted = None if expected is None else expected[name]
                    mismatches.append(
                        f"user {ids[i]} {name} at {as_of:%Y-%m-%d %H:%M:%S}: {value} != {wanted}"
                    )
    return sum(len(rows) for rows in at.values()), mismatches


@contextmanager
def _serving(settings: Settings) -> Iterator[str]:
    """The API on a free loopback port for the block's duration; yields its base URL."""
    import uvicorn

    from churnfs.store.redis_servers import free_port
    from serving.app import create_app

    host = "127.0.0.1"
    port = free_port(host)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="stream-demo-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _api_view(url: str, user_id: int) -> str:
    """What ``GET /features/{user_id}`` answers for the activity view: its event time and source."""
    import httpx

    response = httpx.get(f"{url}/features/{user_id}", timeout=30)
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    view = response.json()["views"].get("user_activity_features") or {}
    return f"activity as of {view.get('event_timestamp')} ({view.get('source')})"


@dataclass
class DemoResult:
    """What the demo's stream stage did and found."""

    start: datetime
    end: datetime
    held_back: int
    published: int
    publish_s: float
    consumers: int
    batches: int
    appended: int
    repeats: int
    quarantined: int
    lag_after_publish: int
    lag_at_end: int
    freshness_s: list[float]
    served: dict[int, str]
    users_compared: int
    mismatches: list[str]
    consistency: ConsistencyReport

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.consistency.ok

    def summary(self) -> dict[str, object]:
        """The one-screen summary."""
        p50, p99 = np.percentile(self.freshness_s, [50, 99]) if self.freshness_s else (math.nan, math.nan)
        rate = self.published / self.publish_s if self.publish_s else 0
        out: dict[str, object] = {
            "held back, then streamed": f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}: "
            f"{self.held_back:,} events",
            "published": f"{self.published:,} events in {self.publish_s:.1f} s ({rate:,.0f}/s)",
            "consumers": f"{self.consumers}: {self.batches:,} micro-batches",
            "appended / repeats / quarantined": f"{self.appended:,} / {self.repeats:,} / "
            f"{self.quarantined:,}",
            "lag when publishing ended / at the end": f"{self.lag_after_publish:,} / {self.lag_at_end:,}",
            "freshness p50 / p99 (XADD to online write)": f"{p50 * 1000:,.0f} ms / {p99 * 1000:,.0f} ms",
        }
        out |= {f"GET /features/{user}": answer for user, answer in self.served.items()}
        out["online == batch recompute"] = f"{self.users_compared:,} users, {len(self.mismatches)} mismatches"
        out["check-consistency"] = (
            f"{self.consistency.users:,} users, {self.consistency.mismatch_count} mismatches"
        )
        return out


def prepare_demo_world(settings: Settings, source: Settings, start: datetime) -> None:
    """The served world: generated like ``source`` but with ``--end`` the day before ``start``,
    its features built, applied and materialized as usual (the batch pipeline as it stood at
    ``start``); then its end moves forward: its raw tables become ``source``'s without the events
    from ``start`` on (worlds that differ only in their end agree row for row before the earlier
    one, so nothing the batch read changes), which the stream then brings."""
    from churnfs.store import apply_repo
    from churnfs.store.repo import materialize
    from churnfs.stream.replay import hold_back_events
    from datagen import generate_world
    from transformations.job import build_features

    spec = load_world_spec(source.raw_dir)
    for folder in (settings.raw_dir, settings.quarantine_dir):
        shutil.rmtree(folder, ignore_errors=True)  # a world of its own: no earlier run's streamed parts
    last_day = (start - timedelta(days=1)).date()
    generate_world(
        settings, users=spec.users, seed=spec.seed, drift=spec.drift, show_progress=False, end=last_day
    )
    build_features(settings, show_progress=False)
    apply_repo(settings)
    materialize(settings, replace=True)
    held = hold_back_events(source, settings.raw_dir, start, spec.end)
    logger.info("the world's end moved to %s; %d events from %s on held back", spec.end, held.num_rows, start)


def stream_held_back(
    settings: Settings,
    source: Settings,
    start: datetime,
    end: datetime,
    consumers: int = 2,
    speed: float | None = None,
) -> DemoResult:
    """The demo's core: with the API serving, ``consumers`` consumer processes follow the events of
    ``source`` in ``[start, end)`` published at ``speed`` times their pace (None: as fast as
    possible) on an emptied stream; once drained, every touched user's online activity row is
    compared with the batch recompute and ``check-consistency`` runs."""
    from churnfs.store.consistency import check_consistency
    from churnfs.store.redis_servers import redis_client
    from churnfs.stream.publish import events_between, publish_events
    from churnfs.stream.replay import finish_consumers, reset_stream, start_consumers, wait_joined
    from churnfs.stream.status import group_lag

    held = events_between(source, start, end)
    client = redis_client(settings.redis_connection_string)
    reset_stream(client, settings)

    def unacknowledged() -> int:
        return int((group_lag(client, settings) or {}).get("unacknowledged", 0))

    with _serving(settings) as url:
        processes = start_consumers(settings, consumers, max_idle_s=3, folder=settings.data_dir / DEMO_DIR)
        wait_joined(client, settings, consumers)
        published = publish_events(settings, start, end, speed=speed, source=source)
        lag_after_publish = unacknowledged()
        deadline = time.monotonic() + 1800
        while unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = finish_consumers(processes)
        last_user = int(held.column("user_id").drop_null()[-1].as_py())
        served = {last_user: _api_view(url, last_user)}
    touched = sorted(set(held.column("user_id").drop_null().to_pylist()))
    compared, mismatches = online_batch_mismatches(settings, touched)
    return DemoResult(
        start=start,
        end=end,
        held_back=held.num_rows,
        published=int(published["events"]),  # type: ignore[call-overload]
        publish_s=float(published["seconds"]),  # type: ignore[arg-type]
        consumers=consumers,
        batches=sum(s["batches"] for s in stats),
        appended=sum(s["events_appended"] for s in stats),
        repeats=sum(s["repeats"] for s in stats),
        quarantined=sum(s["quarantined"] for s in stats),
        lag_after_publish=lag_after_publish,
        lag_at_end=unacknowledged(),
        freshness_s=[f for s in stats for f in s["freshness_s"]],
        served=served,
        users_compared=compared,
        mismatches=mismatches,
        consistency=check_consistency(settings),
    )


def run_stream_demo(
    settings: Settings,
    users: int = 20_000,
    seed: int = 42,
    weeks: int = 3,
    consumers: int = 2,
    speed: float | None = 20_000.0,
) -> dict[str, object]:
    """Generate the full world under ``DATA_DIR/stream-source``, prepare the served world ending
    ``weeks`` before it (``prepare_demo_world``), stream the rest (``stream_held_back``); returns
    the one-screen summary. Raises ``ConsistencyError`` on any mismatch."""
    from datagen import generate_world

    began = time.perf_counter()
    settings = stream_settings(settings)
    source = settings.model_copy(update={"data_dir": settings.data_dir / SOURCE_DIR})
    shutil.rmtree(source.raw_dir, ignore_errors=True)
    generate_world(source, users=users, seed=seed, drift=True, show_progress=False)
    spec = load_world_spec(source.raw_dir)
    start, end = spec.end - timedelta(weeks=weeks), spec.end
    prepare_demo_world(settings, source, start)
    prepared_s = time.perf_counter() - began
    result = stream_held_back(settings, source, start, end, consumers=consumers, speed=speed)
    summary: dict[str, object] = {
        "world": f"{spec.users:,} users, seed {spec.seed}, {spec.start:%Y-%m-%d} to {spec.last_day}",
        "batch pipeline (generate to materialize)": f"{prepared_s:.0f} s: a world generated with --end "
        f"{start - timedelta(days=1):%Y-%m-%d}, online as of {start:%Y-%m-%d}",
        **result.summary(),
        "total": f"{time.perf_counter() - began:.0f} s",
    }
    if result.mismatches:
        shown = "; ".join(result.mismatches[:3])
        raise ConsistencyError(
            f"{len(result.mismatches)} online values differ from the batch recompute: {shown}"
        )
    result.consistency.raise_if_inconsistent()
    return summary
