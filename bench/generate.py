"""Benchmark: ``churnfs generate`` at the headline scale (goal: <= 60 s wall, <= 4 GB peak RSS)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from bench.common import VENV_BIN, Row, run_measured

SUITE = "generate"
WALL_GOAL_S = 60.0
RSS_GOAL_MB = 4096.0


def run(workdir: Path, users: int) -> list[Row]:
    """Generate one world of ``users`` users (seed 42) in a fresh DATA_DIR and measure it."""
    data_dir = workdir / "world"
    measured = run_measured(
        [
            str(VENV_BIN / "churnfs"),
            "generate",
            "--users",
            str(users),
            "--seed",
            "42",
            "--data-dir",
            str(data_dir),
        ]
    )
    raw = data_dir / "raw"
    events = pq.read_metadata(raw / "event_logs.parquet").num_rows
    reviews = pq.read_metadata(raw / "review_table.parquet").num_rows
    targets = pq.read_metadata(raw / "target_table.parquet").num_rows
    note = f"{users:,} users, seed 42, drift on"
    return [
        Row(
            SUITE,
            "wall time",
            round(measured.wall_s, 1),
            "s",
            f"<= {WALL_GOAL_S:.0f}",
            measured.wall_s <= WALL_GOAL_S,
            note,
        ),
        Row(
            SUITE,
            "peak RSS",
            round(measured.peak_rss_mb, 1),
            "MB",
            f"<= {RSS_GOAL_MB:.0f}",
            measured.peak_rss_mb <= RSS_GOAL_MB,
            "whole CLI process",
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
    ]
