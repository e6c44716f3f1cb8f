"""Benchmark of the batch feature job: profile + activity groups, all snapshots.

Generates a world with ``churnfs generate``, then measures ``build_features(groups=["profile",
"activity"])`` in a fresh subprocess (wall time including start-up, peak RSS) and, in the same
run, a plain DuckDB ``SELECT user_id, count(*) ... GROUP BY user_id`` over the same event file:
the ratio shows what the validation, metadata parsing and point-in-time logic cost.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pyarrow.parquet as pq

from bench.common import VENV_BIN, Row, marked_line, run_measured

SUITE = "features"
WALL_GOAL_S = 30.0
PEAK_GOAL_MB = 4096.0
JOB_RUNS = 2

JOB_SCRIPT = """
import json, resource
from churnfs.settings import Settings
from transformations.job import build_features
summary = build_features(Settings(), groups=["profile", "activity"], show_progress=False)
usage = resource.getrusage(resource.RUSAGE_SELF)
summary["cpu seconds"] = usage.ru_utime + usage.ru_stime
print("SUMMARY " + json.dumps(summary, default=str))
"""

BASELINE_SCRIPT = """
import sys, time, duckdb
path = sys.argv[1]
con = duckdb.connect()
times = []
for _ in range(5):
    start = time.perf_counter()
    con.sql(f"SELECT user_id, count(*) FROM read_parquet('{path}') GROUP BY user_id").fetchall()
    times.append(time.perf_counter() - start)
print("BASELINE", sorted(times)[len(times) // 2])
"""


def run(workdir: Path, users: int) -> list[Row]:
    """Generate a world at ``users``, then time the job and the GROUP BY baseline side by side."""
    data_dir = workdir / "world"
    env = {"DATA_DIR": str(data_dir)}
    python = str(VENV_BIN / "python")
    run_measured([str(VENV_BIN / "churnfs"), "generate", "--users", str(users), "--seed", "42"], env=env)
    events_path = data_dir / "raw" / "event_logs.parquet"
    events = pq.ParquetFile(events_path).metadata.num_rows

    load = os.getloadavg()[0]
    jobs = [run_measured([python, "-c", JOB_SCRIPT], env=env) for _ in range(JOB_RUNS)]
    baseline_s = float(
        marked_line(run_measured([python, "-c", BASELINE_SCRIPT, str(events_path)]).stdout, "BASELINE")
    )
    summaries = [json.loads(marked_line(j.stdout, "SUMMARY")) for j in jobs]
    summary = summaries[-1]
    wall = statistics.median(j.wall_s for j in jobs)
    inside = statistics.median(float(s["seconds"]) for s in summaries)
    cpu = statistics.median(float(s["cpu seconds"]) for s in summaries)
    peak = max(j.peak_rss_mb for j in jobs)
    return [
        Row(SUITE, "users", users),
        Row(SUITE, "events", events, note="rows of event_logs.parquet"),
        Row(SUITE, "snapshots", summary["as-of times"], note="as-of times (weekly + cutoffs + end)"),
        Row(SUITE, "rows per group", summary["rows user_activity_features"]),
        Row(SUITE, "quarantined events", summary.get("quarantined event_logs", 0)),
        Row(
            SUITE,
            "job wall (profile + activity)",
            wall,
            "s",
            f"<= {WALL_GOAL_S:.0f}",
            wall <= WALL_GOAL_S,
            f"median of {JOB_RUNS} subprocess runs, start-up, imports and writes included; "
            f"1-min load average {load:.1f} before the runs",
        ),
        Row(SUITE, "job seconds inside build_features", inside, "s", note="read, validate, compute, write"),
        Row(SUITE, "job CPU seconds (user + sys)", cpu, "s", note="whole subprocess"),
        Row(SUITE, "job peak RSS", peak, "MB", f"<= {PEAK_GOAL_MB:.0f}", peak <= PEAK_GOAL_MB),
        Row(
            SUITE,
            "baseline GROUP BY user_id count",
            baseline_s,
            "s",
            note="DuckDB over the same parquet, median of 5",
        ),
        Row(
            SUITE,
            "ratio job / baseline",
            inside / baseline_s,
            "x",
            note="time inside build_features / baseline: validation, parsing, point-in-time logic, writes",
        ),
    ]
