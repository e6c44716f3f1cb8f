"""Replaying a world's own events through the stream: the pieces the benchmark (``bench/stream.py``)
and the demo (``churnfs stream demo``) share.

A world's events of some window are *held back*: its raw tables are copied without them, so the
copy's calendar still covers them (the stream validates events against the world's window, and a
world generated with an earlier ``--end`` would quarantine them), and ``churnfs stream publish
--source <the full world>`` replays exactly those events into the copy's stream. The consumers are
``churnfs stream consume`` processes, started and waited for here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnfs.settings import Settings
from churnfs.world import load_world_spec


def newest_days_holding(source: Settings, needed: int) -> tuple[datetime, datetime]:
    """The newest whole days before the world's last day that hold at least ``needed`` events
    (all of them when the world has fewer): ``[start, end)``."""
    spec = load_world_spec(source.raw_dir)
    times = pq.read_table(source.raw_dir / "event_logs.parquet", columns=["event_timestamp"]).column(
        "event_timestamp"
    )
    end = spec.end - timedelta(days=1)
    start = end
    while True:
        start -= timedelta(days=1)
        window = pc.and_(
            pc.greater_equal(times, pa.scalar(start, times.type)), pc.less(times, pa.scalar(end, times.type))
        )
        if pc.sum(window).as_py() >= needed or start <= spec.start:
            return start, end


def hold_back_events(source: Settings, target_raw_dir: Path, start: datetime, end: datetime) -> pa.Table:
    """Copy ``source``'s raw world into ``target_raw_dir`` without its events of ``[start, end)``;
    returns those events ordered as ``churnfs stream publish`` sends them (time, then id)."""
    target_raw_dir.mkdir(parents=True, exist_ok=True)
    for path in source.raw_dir.iterdir():
        if path.is_file() and path.name != "event_logs.parquet":
            shutil.copy(path, target_raw_dir / path.name)
    events = pq.read_table(source.raw_dir / "event_logs.parquet")
    times = events.column("event_timestamp")
    window = pc.and_(
        pc.greater_equal(times, pa.scalar(start, times.type)), pc.less(times, pa.scalar(end, times.type))
    )
    pq.write_table(events.filter(pc.invert(window)), target_raw_dir / "event_logs.parquet")
    held = events.filter(window)
    return held.sort_by([("event_timestamp", "ascending"), ("event_id", "ascending")])


def reset_stream(client: Any, settings: Settings) -> None:
    """Delete the stream, its group, clock and write lock (only these keys: a shared Redis keeps
    everything else), so a replay starts from an empty stream."""
    from churnfs.stream.consumer import clock_key, lock_key

    client.delete(settings.stream_key, clock_key(settings), lock_key(settings))


@dataclass
class ConsumerProcess:
    """A ``churnfs stream consume`` process and where it writes its stats."""

    process: subprocess.Popen[bytes]
    stats_path: Path
    log_path: Path


def start_consumers(settings: Settings, count: int, max_idle_s: float, folder: Path) -> list[ConsumerProcess]:
    """Start ``count`` consumer processes on ``settings``' world and Redis; each stops after
    ``max_idle_s`` seconds without entries and writes its stats to ``folder``."""
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "REDIS_CONNECTION_STRING": settings.redis_connection_string,
        "STREAM_KEY": settings.stream_key,
        "STREAM_GROUP": settings.stream_group,
        "STREAM_BATCH_SIZE": str(settings.stream_batch_size),
    }
    churnfs = Path(sys.executable).parent / "churnfs"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        stats, log = folder / f"consumer-{i}.json", folder / f"consumer-{i}.log"
        stats.unlink(missing_ok=True)
        command = [
            str(churnfs),
            "stream",
            "consume",
            "--max-idle",
            str(max_idle_s),
            "--stats-json",
            str(stats),
        ]
        with open(log, "wb") as output:  # a file, not a pipe: a chatty consumer never blocks on it
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        out.append(ConsumerProcess(process, stats, log))
    return out


def wait_joined(client: Any, settings: Settings, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` consumers are in the group (each joins with its first read)."""
    from churnfs.stream.consumer import ensure_group

    ensure_group(client, settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(client.xinfo_consumers(settings.stream_key, settings.stream_group)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} consumers did not join within {timeout_s} s")


def finish_consumers(consumers: list[ConsumerProcess], timeout_s: float = 1800) -> list[dict[str, Any]]:
    """Wait for the consumers to stop (idle) and return what each did (``--stats-json``)."""
    stats = []
    for consumer in consumers:
        if consumer.process.wait(timeout=timeout_s) != 0:
            tail = consumer.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"a consumer exited with {consumer.process.returncode}: {tail}")
        stats.append(json.loads(consumer.stats_path.read_text()))
    return stats
