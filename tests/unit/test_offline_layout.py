"""The offline store's file layout: each as-of time in bounded row groups, also after a merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import transformations.job
from transformations.job import merge_offline_runs, write_offline_group

D = datetime(2025, 1, 6, tzinfo=UTC)
STAMP = pa.timestamp("us", tz="UTC")


def _snapshots(users: range, times: int = 3) -> pa.Table:
    """``times`` weekly as-of times of ``users``, in (time, user) order, with a list column."""
    rows = [(u, D + timedelta(days=7 * k)) for k in range(times) for u in users]
    return pa.table(
        {
            "user_id": pa.array([u for u, _ in rows], pa.int64()),
            "event_timestamp": pa.array([t for _, t in rows], STAMP),
            "value": pa.array([float(u) + t.day for u, t in rows]),
            "vector": pa.array([[float(u), 1.0] for u, _ in rows], pa.list_(pa.float32())),
        }
    )


def _layout(path: Path) -> list[tuple[int, int]]:
    """Each row group's (row count, number of distinct event times)."""
    file = pq.ParquetFile(path)
    return [
        (g.num_rows, len(set(g.column("event_timestamp").to_pylist())))
        for g in (file.read_row_group(i) for i in range(file.num_row_groups))
    ]


def test_each_as_of_time_is_cut_into_bounded_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transformations.job, "OFFLINE_ROW_GROUP", 4)
    table = _snapshots(range(1, 11))
    write_offline_group(table.take(pa.array(list(reversed(range(table.num_rows))))), tmp_path / "v.parquet")
    # 10 users per as-of time: 4 + 4 + 2, never two times in one group
    assert _layout(tmp_path / "v.parquet") == [(4, 1), (4, 1), (2, 1)] * 3
    assert pq.read_table(tmp_path / "v.parquet").to_pylist() == table.to_pylist()  # sorted back


@pytest.mark.parametrize("in_order", [True, False])
def test_merged_runs_have_the_layout_of_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_order: bool
) -> None:
    """Partitions of 3 users (row groups of 3) re-cut into row groups of 4 per as-of time: the
    merged file equals one write of all users, row group for row group; runs handed over out of
    user order are sorted instead of streamed, with the same result."""
    monkeypatch.setattr(transformations.job, "OFFLINE_ROW_GROUP", 4)
    whole = tmp_path / "whole.parquet"
    write_offline_group(_snapshots(range(1, 11)), whole)
    runs = []
    for n, users in enumerate((range(1, 4), range(4, 7), range(7, 10), range(10, 11))):
        runs.append(tmp_path / f"run-{n}")
        write_offline_group(_snapshots(users), runs[-1])
    merged = tmp_path / "merged.parquet"
    merge_offline_runs(runs if in_order else runs[::-1], merged)
    assert _layout(merged) == _layout(whole) == [(4, 1), (4, 1), (2, 1)] * 3
    assert pq.read_table(merged).to_pylist() == pq.read_table(whole).to_pylist()
