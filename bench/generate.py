"""Benchmark: ``churnfs generate`` at the headline scale (goal: <= 60 s wall, <= 4 GB peak RSS),
``--runs`` times, each a fresh process into a fresh folder; the table gives medians and ranges."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq

from bench.common import VENV_BIN, Row, Spread, load_average, run_measured

SUITE = "generate"
WALL_GOAL_S = 60.0
RSS_GOAL_MB = 4096.0


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    """Generate a world of ``users`` users (seed 42) ``runs`` times in a fresh DATA_DIR and measure it."""
    data_dir = workdir / "world"
    command = [str(VENV_BIN / "churnfs"), "generate", "--users", str(users), "--seed", "42"]
    walls, peaks, loads = [], [], [load_average()]
    for _ in range(runs):
        shutil.rmtree(data_dir, ignore_errors=True)
        measured = run_measured([*command, "--data-dir", str(data_dir)])
        walls.append(measured.wall_s)
        peaks.append(measured.peak_rss_mb)
        loads.append(load_average())
    wall, peak = Spread.of(walls), Spread.of(peaks)
    raw = data_dir / "raw"
    events = pq.read_metadata(raw / "event_logs.parquet").num_rows
    reviews = pq.read_metadata(raw / "review_table.parquet").num_rows
    targets = pq.read_metadata(raw / "target_table.parquet").num_rows
    note = f"{users:,} users, seed 42, drift on"
    return [
        Row(
            SUITE,
            "wall time",
            round(wall.median, 1),
            "s",
            f"<= {WALL_GOAL_S:.0f}",
            wall.high <= WALL_GOAL_S,
            f"{note}; {wall.as_range('.1f', ' s')}",
        ),
        Row(
            SUITE,
            "peak RSS",
            round(peak.median, 1),
            "MB",
            f"<= {RSS_GOAL_MB:.0f}",
            peak.high <= RSS_GOAL_MB,
            f"whole CLI process; {peak.as_range('.0f', ' MB')}",
        ),
        Row(
            SUITE,
            "events",
            f"{events:,}",
            "rows",
            "about 24 per user",
            None,
            f"{events / users:.1f} per user",
        ),
        Row(SUITE, "reviews", f"{reviews:,}", "rows", "", None, f"{reviews / users:.2f} per user"),
        Row(SUITE, "target rows", f"{targets:,}", "rows", "", None, "9 cutoffs"),
        Row(SUITE, "load average (1 min) before / after each run", " / ".join(f"{x:.1f}" for x in loads)),
    ]
