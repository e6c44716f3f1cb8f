"""The stream path against a real Redis: events published to ``churnfs:events`` end up in the raw
store exactly once, and every touched user's online activity values equal a batch recompute from
the raw store as of the same time, also after a consumer is killed with SIGKILL, with two
consumers at once, and with malformed entries in the stream.

The consumer's world is a copy of the session's small world whose events of one week (a couple of
thousand) were taken out of ``event_logs.parquet``; the small world itself is the source the
publisher replays that week from. Each test gets a fresh copy and an empty Redis database.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry

from churnfs.settings import Settings
from churnfs.store.parts import STREAM_PARTS_DIR, part_files
from churnfs.store.redis_servers import RedisServer, redis_client
from churnfs.world import load_world_spec
from tests.conftest import start_private_redis

pytestmark = pytest.mark.integration

HELD_BACK_DAYS = 7
STREAM_ENV = {"STREAM_BATCH_SIZE": "100", "STREAM_CLAIM_IDLE_MS": "1000", "STREAM_LOCK_TIMEOUT_S": "2"}


@dataclass
class StreamWorld:
    base: Path
    source: Settings
    start: datetime
    end: datetime
    held_back: pa.Table
    server: RedisServer


@pytest.fixture(scope="module")
def stream_world(small_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamWorld]:
    """A consumer world without one week of events, its registry applied, and a private Redis."""
    from churnfs.store import apply_repo

    workdir = tmp_path_factory.mktemp("stream")
    spec = load_world_spec(small_world.raw_dir)
    end = spec.end - timedelta(days=1)
    start = end - timedelta(days=HELD_BACK_DAYS)
    base = workdir / "base"
    (base / "raw").mkdir(parents=True)
    for path in small_world.raw_dir.iterdir():
        if path.is_file() and path.name != "event_logs.parquet":
            shutil.copy(path, base / "raw" / path.name)
    events = pq.read_table(small_world.raw_dir / "event_logs.parquet")
    times = events.column("event_timestamp")
    week = pc.and_(
        pc.greater_equal(times, pa.scalar(start, times.type)), pc.less(times, pa.scalar(end, times.type))
    )
    pq.write_table(events.filter(pc.invert(week)), base / "raw" / "event_logs.parquet")
    server = start_private_redis(workdir / "redis")
    try:
        apply_repo(Settings(data_dir=base, redis_connection_string=f"127.0.0.1:{server.port}"))
        yield StreamWorld(base, small_world, start, end, events.filter(week), server)
    finally:
        server.stop()


@pytest.fixture
def world(stream_world: StreamWorld, tmp_path: Path) -> Settings:
    """A fresh copy of the consumer world on an empty Redis, with small, quickly claimed batches."""
    data_dir = tmp_path / "world"
    shutil.copytree(stream_world.base, data_dir)
    redis_client(f"127.0.0.1:{stream_world.server.port}").flushall()
    return Settings(
        data_dir=data_dir,
        redis_connection_string=f"127.0.0.1:{stream_world.server.port}",
        stream_batch_size=100,
        stream_claim_idle_ms=1000,
        stream_lock_timeout_s=2,
    )


def _consumer_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **STREAM_ENV,
        "DATA_DIR": str(settings.data_dir),
        "REDIS_CONNECTION_STRING": settings.redis_connection_string,
    }
    churnfs = Path(sys.executable).parent / "churnfs"
    return subprocess.Popen(
        [str(churnfs), "stream", "consume", "--max-idle", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _consume_until_drained(settings: Settings, metrics: Any = None) -> Any:
    from churnfs.stream.consumer import StreamConsumer

    return StreamConsumer(settings, name="test-consumer", metrics=metrics).run(max_idle_s=3)


def _sample(metrics: Any, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return float(value or 0.0)


def _online_activity(
    settings: Settings, user_ids: list[int]
) -> tuple[dict[int, datetime], dict[int, dict[str, Any]]]:
    """Each user's online activity row: its event time and values."""
    from churnfs.store import get_store
    from transformations.activity import ACTIVITY_COLUMNS

    store = get_store(settings, check_online=False)
    columns = store.get_online_features(
        features=[f"user_activity_features:{c}" for c in ACTIVITY_COLUMNS],
        entity_rows=[{"user_id": u} for u in user_ids],
    ).to_dict(include_event_timestamps=True)
    times, values = {}, {}
    for i, user in enumerate(user_ids):
        seconds = max((columns[f"{c}__ts"][i] or 0) for c in ACTIVITY_COLUMNS)
        times[user] = datetime.fromtimestamp(seconds, tz=UTC)
        values[user] = {c: columns[c][i] for c in ACTIVITY_COLUMNS}
    return times, values


def _same(online: Any, batch: Any) -> bool:
    if isinstance(batch, list):
        return (
            online is not None
            and len(online) == len(batch)
            and all(_same(o, b) for o, b in zip(online, batch, strict=True))
        )
    if isinstance(batch, float):
        return online is not None and math.isclose(float(online), batch, rel_tol=1e-6, abs_tol=1e-9)
    return bool(online == batch)


def assert_drained_and_equal_to_batch(settings: Settings, published: pa.Table) -> int:
    """Every published usable event is in the raw store exactly once, nothing is pending, and every
    touched user's online activity row equals the batch job's recompute as of its event time.
    Returns how many users were compared."""
    from churnfs.stream.status import stream_status
    from transformations.groups import group_views, read_raw_table, validate
    from transformations.stream import recompute_activity

    status = stream_status(settings)
    assert status["lag"] == 0 and status["pending"] == 0, status

    spec = load_world_spec(settings.raw_dir)
    users = validate("user_table", read_raw_table(settings, "user_table"), None, spec).clean
    raw = read_raw_table(settings, "event_logs")
    usable = validate("event_logs", published, users, spec).clean
    counts = pc.value_counts(raw.column("event_id"))
    count_of = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
    missing_or_twice = [i for i in usable.column("event_id").to_pylist() if count_of.get(i) != 1]
    assert not missing_or_twice, f"{len(missing_or_twice)} published events not in the raw store exactly once"
    appended = sum(
        pq.read_metadata(p).num_rows
        for p in part_files(settings.raw_dir / "event_logs.parquet", STREAM_PARTS_DIR)
    )
    assert appended == usable.num_rows

    touched = sorted(set(usable.column("user_id").to_pylist()))
    times, online = _online_activity(settings, touched)
    clean = validate("event_logs", raw, users, spec).clean
    mismatches = []
    for as_of in sorted(set(times.values())):
        batch = group_views("activity", users, clean, [as_of], settings)["user_activity_features"]
        rows = {r["user_id"]: r for r in batch.to_pylist()}
        # the same users read from disk for themselves alone (read_raw_table's user filter over
        # the file and the parts) give the batch rows too
        at_this_time = [u for u in touched if times[u] == as_of]
        from_disk = recompute_activity(settings, users, at_this_time, as_of, spec)
        assert from_disk.equals(batch.filter(pc.is_in(batch.column("user_id"), pa.array(at_this_time))))
        for user in (u for u in touched if times[u] == as_of):
            for name, value in online[user].items():
                if not _same(value, rows[user][name]):
                    mismatches.append((user, as_of, name, value, rows[user][name]))
    assert not mismatches, (
        f"{len(mismatches)} online values differ from the batch recompute: {mismatches[:5]}"
    )
    return len(touched)


def test_a_drained_stream_stores_each_event_once_and_serves_batch_equal_values(
    world: Settings, stream_world: StreamWorld
) -> None:
    from churnfs.stream.metrics import StreamMetrics
    from churnfs.stream.publish import publish_events
    from serving.metrics import ServiceMetrics
    from serving.service import ServingState

    summary = publish_events(world, stream_world.start, stream_world.end, source=stream_world.source)
    assert summary["events"] == stream_world.held_back.num_rows > 1000
    state = ServingState(world, ServiceMetrics(CollectorRegistry()))
    assert state._stream_lag() is None  # no group yet: /health has nothing to report
    metrics = StreamMetrics()
    stats = _consume_until_drained(world, metrics)
    assert stats.failed_batches == 0 and stats.entries == stream_world.held_back.num_rows
    assert assert_drained_and_equal_to_batch(world, stream_world.held_back) > 100

    # what Prometheus and /health see once the stream is drained
    processed = _sample(metrics, "churnfs_stream_events_total", outcome="processed")
    quarantined = _sample(metrics, "churnfs_stream_events_total", outcome="quarantined")
    assert processed == stats.events_appended and processed + quarantined == summary["events"]
    assert _sample(metrics, "churnfs_stream_freshness_seconds_count") == processed
    assert _sample(metrics, "churnfs_stream_lag") == 0
    assert _sample(metrics, "churnfs_stream_batches_total", outcome="ok") == stats.batches
    lag = state._stream_lag()
    assert lag is not None and (lag["lag"], lag["pending"], lag["consumers"]) == (0, 0, 1)

    # the offline store got the same rows: each touched user's newest part row is its online row
    parts = part_files(world.offline_store_dir / "user_activity_features.parquet")
    offline = pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist()
    newest: dict[int, datetime] = {}
    for row in offline:
        newest[row["user_id"]] = max(
            newest.get(row["user_id"], row["event_timestamp"]), row["event_timestamp"]
        )
    times, _ = _online_activity(world, sorted(newest))
    assert times == newest

    # the batch job reads the streamed events too: its last snapshot counts every clean event
    from transformations.groups import read_raw_table, validate
    from transformations.job import build_features

    build_features(world, groups=["activity"], show_progress=False)
    spec = load_world_spec(world.raw_dir)
    users = validate("user_table", read_raw_table(world, "user_table"), None, spec).clean
    clean = validate("event_logs", read_raw_table(world, "event_logs"), users, spec).clean
    snapshots = pq.read_table(world.offline_store_dir / "user_activity_features.parquet")
    last = snapshots.filter(
        pc.equal(
            snapshots.column("event_timestamp"),
            pa.scalar(spec.end, snapshots.schema.field("event_timestamp").type),
        )
    )
    assert pc.sum(last.column("total_events")).as_py() == clean.num_rows
    assert not part_files(
        world.offline_store_dir / "user_activity_features.parquet"
    )  # superseded by the rebuild


def test_events_published_twice_are_stored_and_counted_once(
    world: Settings, stream_world: StreamWorld
) -> None:
    from churnfs.stream.publish import publish_events

    for _ in range(2):
        publish_events(world, stream_world.start, stream_world.end, source=stream_world.source)
    stats = _consume_until_drained(world)
    assert stats.entries == 2 * stream_world.held_back.num_rows
    assert stats.repeats >= stream_world.held_back.num_rows - stats.quarantined // 2
    assert_drained_and_equal_to_batch(world, stream_world.held_back)


def test_a_consumer_killed_mid_stream_loses_and_doubles_nothing_after_a_restart(
    world: Settings, stream_world: StreamWorld
) -> None:
    from churnfs.stream.publish import publish_events

    publish_events(world, stream_world.start, stream_world.end, source=stream_world.source)
    first = _consumer_process(world)
    raw_file = world.raw_dir / "event_logs.parquet"
    deadline = time.monotonic() + 60
    while (
        len(part_files(raw_file, STREAM_PARTS_DIR)) < 3
        and time.monotonic() < deadline
        and first.poll() is None
    ):
        time.sleep(0.05)
    assert first.poll() is None, "the consumer finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert len(part_files(raw_file, STREAM_PARTS_DIR)) >= 3
    from churnfs.stream.status import stream_status

    left = stream_status(world)
    assert left["pending"] > 0, left  # the dead consumer held entries it never acknowledged

    stats = _consume_until_drained(world)
    assert stats.failed_batches == 0 and stats.claimed == left["pending"]
    assert_drained_and_equal_to_batch(world, stream_world.held_back)


def test_two_consumers_share_the_stream_and_process_each_event_once(
    world: Settings, stream_world: StreamWorld
) -> None:
    from churnfs.stream.publish import publish_events
    from churnfs.stream.status import stream_status

    consumers = [_consumer_process(world) for _ in range(2)]
    try:
        # both must have joined the group before the events come (a loaded machine takes seconds
        # to start each process; a late one would find the stream drained)
        deadline = time.monotonic() + 90
        while len(stream_status(world)["consumers"] or []) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(stream_status(world)["consumers"] or []) == 2, "the two consumers never joined"
        publish_events(world, stream_world.start, stream_world.end, rate=1000, source=stream_world.source)
        outputs = [c.communicate(timeout=120)[0].decode() for c in consumers]
    finally:
        for c in consumers:
            if c.poll() is None:
                c.kill()
    assert all(c.returncode == 0 for c in consumers), outputs
    parts = [p.name for p in part_files(world.raw_dir / "event_logs.parquet", STREAM_PARTS_DIR)]
    assert all(any(f"-{c.pid}-" in name for name in parts) for c in consumers), "one consumer did nothing"
    assert_drained_and_equal_to_batch(world, stream_world.held_back)


def test_malformed_entries_are_quarantined_with_a_reason_and_the_stream_keeps_flowing(
    world: Settings, stream_world: StreamWorld
) -> None:
    from churnfs.stream.publish import publish_entries
    from churnfs.stream.raw_store import RawEventStore
    from transformations.stream import encode_events

    events = stream_world.held_back.slice(0, 300)
    entries = encode_events(events)
    good = entries[0]
    bad = [
        {**good, "event_id": "not-a-number"},
        {**good, "event_id": "990000001", "event_type": "teleport"},
        {k: v for k, v in {**good, "event_id": "990000002"}.items() if k != "user_id"},
        {**good, "event_id": "990000003", "event_timestamp": "2031-01-01T00:00:00+00:00"},
    ]
    stream = entries[:100] + bad + entries[100:]
    publish_entries(redis_client(world.redis_connection_string), world.stream_key, stream)
    stats = _consume_until_drained(world)
    assert stats.failed_batches == 0 and stats.entries == len(stream)

    quarantined = RawEventStore(world).quarantined()
    assert quarantined is not None
    reasons = dict(
        zip(
            quarantined.column("stream_id").to_pylist(), quarantined.column("reason").to_pylist(), strict=True
        )
    )
    by_event = dict(
        zip(quarantined.column("event_id").to_pylist(), quarantined.column("reason").to_pylist(), strict=True)
    )
    assert any(r.startswith("malformed_entry: event_id 'not-a-number'") for r in reasons.values())
    assert by_event[990000001] == "unknown_event_type"
    assert by_event[990000002] == "null_user_id"
    assert by_event[990000003] == "timestamp_outside_window"
    assert_drained_and_equal_to_batch(world, events)
    store = RawEventStore(world)
    store.refresh()
    assert not np.isin([990000001, 990000002, 990000003], store.known_ids).any()  # kept out of the raw store


def test_a_consumer_waits_out_a_redis_restart_and_resumes_without_losing_work(
    world: Settings, stream_world: StreamWorld, tmp_path: Path
) -> None:
    from churnfs.store.redis_servers import start_redis_server
    from churnfs.stream.publish import publish_events

    server = start_private_redis(tmp_path / "redis", persist=True)  # a snapshot on stop, loaded on start
    settings = world.model_copy(update={"redis_connection_string": server.address})
    try:
        publish_events(settings, stream_world.start, stream_world.end, rate=500, source=stream_world.source)
        consumer = _consumer_process(settings)
        raw_file = settings.raw_dir / "event_logs.parquet"
        deadline = time.monotonic() + 60
        while len(part_files(raw_file, STREAM_PARTS_DIR)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consumer.poll() is None, "the consumer finished before Redis went away"
        parts_before = len(part_files(raw_file, STREAM_PARTS_DIR))
        server.stop()
        time.sleep(2)
        server = start_redis_server(server.directory, port=server.port, persistence=server.persistence)
        output = consumer.communicate(timeout=120)[0].decode()
        assert consumer.returncode == 0, output
        assert len(part_files(raw_file, STREAM_PARTS_DIR)) > parts_before  # it went on after the restart
        assert_drained_and_equal_to_batch(settings, stream_world.held_back)
    finally:
        server.stop()


def _consume_then_status(runner: Any, env: dict[str, str]) -> dict[str, str]:
    """``churnfs stream consume --max-idle 1``, then ``churnfs stream status``'s table as a dict."""
    from churnfs.cli import app

    consumed = runner.invoke(app, ["stream", "consume", "--max-idle", "1"], env=env)
    assert consumed.exit_code == 0, consumed.output
    status = runner.invoke(app, ["stream", "status"], env=env)
    assert status.exit_code == 0, status.output
    return {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in status.output.splitlines()
        if line.count("│") == 3
    }


def test_the_stream_commands_publish_consume_and_report_a_drained_group(
    world: Settings, stream_world: StreamWorld
) -> None:
    from typer.testing import CliRunner

    from churnfs.cli import app

    env = {"DATA_DIR": str(world.data_dir), "REDIS_CONNECTION_STRING": world.redis_connection_string}
    runner = CliRunner()
    day = stream_world.end - timedelta(days=1)
    window = ["--from", f"{day:%Y-%m-%d}", "--to", f"{stream_world.end:%Y-%m-%d}"]
    published = runner.invoke(
        app, ["stream", "publish", *window, "--source", str(stream_world.source.data_dir)], env=env
    )
    assert published.exit_code == 0, published.output
    backwards = runner.invoke(
        app, ["stream", "publish", "--from", "2025-06-02", "--to", "2025-06-01"], env=env
    )
    assert backwards.exit_code != 0 and "must be after" in backwards.output
    lines = _consume_then_status(runner, env)
    assert (lines["lag"], lines["pending"]) == ("0", "0")
    week = stream_world.held_back
    times = week.column("event_timestamp")
    one_day = week.filter(pc.greater_equal(times, pa.scalar(day, times.type)))
    assert int(lines["entries"]) == one_day.num_rows > 0
    assert_drained_and_equal_to_batch(world, one_day)


def test_the_stream_commands_follow_the_private_redis_recorded_for_the_world(
    world: Settings, stream_world: StreamWorld
) -> None:
    """``churnfs online-store up`` recorded a private redis-server under DATA_DIR while nothing
    answers at REDIS_CONNECTION_STRING: publish, consume and status use the private server, as
    every other command on that world does."""
    import socket

    from typer.testing import CliRunner

    from churnfs.cli import app
    from churnfs.store.embedded import start_embedded_online_store, stop_embedded_online_store
    from churnfs.stream.location import stream_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{sock.getsockname()[1]}"
    settings = world.model_copy(update={"redis_connection_string": nowhere})
    record = start_embedded_online_store(settings)
    assert record is not None and record.kind == "redis"
    try:
        assert stream_settings(settings).redis_connection_string == record.connection_string
        env = {"DATA_DIR": str(world.data_dir), "REDIS_CONNECTION_STRING": nowhere}
        runner = CliRunner()
        day = stream_world.end - timedelta(days=1)
        window = ["--from", f"{day:%Y-%m-%d}", "--to", f"{stream_world.end:%Y-%m-%d}"]
        source = ["--source", str(stream_world.source.data_dir)]
        published = runner.invoke(app, ["stream", "publish", *window, *source], env=env)
        assert published.exit_code == 0, published.output
        private = redis_client(record.connection_string)
        times = stream_world.held_back.column("event_timestamp")
        one_day = stream_world.held_back.filter(pc.greater_equal(times, pa.scalar(day, times.type)))
        assert private.xlen(settings.stream_key) == one_day.num_rows > 0
        lines = _consume_then_status(runner, env)
        assert (lines["entries"], lines["lag"], lines["pending"]) == (str(one_day.num_rows), "0", "0")
        assert_drained_and_equal_to_batch(stream_settings(settings), one_day)
    finally:
        stop_embedded_online_store(settings)


def test_a_write_phase_longer_than_the_lock_lease_keeps_the_lock(
    world: Settings, stream_world: StreamWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    import churnfs.stream.consumer as consumer_module
    from churnfs.stream.publish import publish_entries
    from transformations.stream import activity_rows, encode_events

    def slow_rows(*args: Any, **kwargs: Any) -> pa.Table:
        time.sleep(2.5)  # the lease below is 1 s
        return activity_rows(*args, **kwargs)

    monkeypatch.setattr(consumer_module, "activity_rows", slow_rows)
    settings = world.model_copy(update={"stream_lock_timeout_s": 1.0})
    events = stream_world.held_back.slice(0, 100)
    publish_entries(
        redis_client(settings.redis_connection_string), settings.stream_key, encode_events(events)
    )
    stats = _consume_until_drained(settings)
    assert (stats.batches, stats.failed_batches) == (1, 0)
    assert_drained_and_equal_to_batch(settings, events)


def test_the_consumers_online_writer_stores_the_hashes_feasts_push_stores(
    world: Settings, stream_world: StreamWorld
) -> None:
    from feast.data_source import PushMode

    from churnfs.store import get_store
    from churnfs.store.online_rows import OnlineRowWriter
    from transformations.groups import read_raw_table, validate
    from transformations.job import with_created_timestamp
    from transformations.stream import ACTIVITY_VIEW, recompute_activity

    spec = load_world_spec(world.raw_dir)
    users = validate("user_table", read_raw_table(world, "user_table"), None, spec).clean
    user_ids = sorted(set(stream_world.held_back.column("user_id").drop_null().to_pylist()))[:200]
    rows = recompute_activity(world, users, user_ids, stream_world.end, spec)
    table = with_created_timestamp(rows, datetime.now(UTC))
    assert table.num_rows > 100
    client = redis_client(world.redis_connection_string)

    def stored() -> dict[bytes, dict[bytes, bytes]]:
        return {key: client.hgetall(key) for key in client.keys("*")}

    store = get_store(world, check_online=False)
    assert OnlineRowWriter(store).write(ACTIVITY_VIEW, table) == table.num_rows
    ours = stored()
    client.flushall()
    store.push("user_activity_push", table.to_pandas(), to=PushMode.ONLINE)
    feasts = stored()
    assert len(ours) == table.num_rows and ours == feasts
    # Feast's write rule without skip_dedup: rows no newer than the stored ones are skipped
    assert OnlineRowWriter(store).write(ACTIVITY_VIEW, table) == 0


def test_the_stream_demo_streams_the_held_back_events_and_ends_equal_to_batch(
    stream_world: StreamWorld, feature_world: Settings, tmp_path: Path
) -> None:
    """``churnfs stream demo``'s core (``stream_held_back``) on the small world, with its last
    eight days held back: the session's offline store cut at the hold-back stands for the batch
    job of a world generated with ``--end`` then (rows up to it read nothing later), materialized
    up to it; two consumer processes and the API."""
    from churnfs.store import apply_repo
    from churnfs.store.repo import materialize
    from churnfs.stream.demo import stream_held_back
    from churnfs.stream.replay import hold_back_events
    from transformations.groups import read_raw_table, validate

    address = f"127.0.0.1:{stream_world.server.port}"
    redis_client(address).flushall()
    settings = Settings(data_dir=tmp_path / "demo", redis_connection_string=address, stream_batch_size=500)
    start, end = stream_world.start, load_world_spec(feature_world.raw_dir).end
    held = hold_back_events(feature_world, settings.raw_dir, start, end)
    settings.offline_store_dir.mkdir(parents=True)
    for path in feature_world.offline_store_dir.glob("*.parquet"):
        rows = pq.read_table(path)
        if "event_timestamp" in rows.column_names:
            times = rows.column("event_timestamp")
            rows = rows.filter(pc.less_equal(times, pa.scalar(start, times.type)))
        pq.write_table(rows, settings.offline_store_dir / path.name)
    apply_repo(settings)
    materialize(settings, end=start, replace=True)

    result = stream_held_back(settings, feature_world, start, end, consumers=2)
    assert result.held_back == result.published == held.num_rows > 1000
    assert result.appended + result.quarantined == held.num_rows and result.repeats == 0
    assert result.lag_at_end == 0 and len(result.freshness_s) == result.appended
    spec = load_world_spec(settings.raw_dir)
    users = validate("user_table", read_raw_table(settings, "user_table"), None, spec).clean
    usable = validate("event_logs", held, users, spec).clean
    assert result.appended == usable.num_rows
    assert result.users_compared == len(set(usable.column("user_id").to_pylist())) > 100
    assert result.mismatches == []
    assert result.consistency.ok and len(result.consistency.refreshed_user_ids) > 100
    ((user, answer),) = result.served.items()  # over HTTP: the streamed row, newer than the hold-back
    times, _ = _online_activity(settings, [user])
    assert answer == f"activity as of {times[user]:%Y-%m-%dT%H:%M:%SZ} (online)" and times[user] > start
    summary = result.summary()
    assert summary["online == batch recompute"] == f"{result.users_compared:,} users, 0 mismatches"
