"""The offline fallback keeps each user's newest snapshot, refresh parts included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from churnfs.io import write_parquet_atomic
from churnfs.store.parts import append_part, part_name
from serving.offline import OfflineSnapshots, latest_rows, latest_rows_by_duckdb, view_files

T1 = datetime(2025, 6, 30, tzinfo=UTC)
T2 = datetime(2025, 7, 7, tzinfo=UTC)
CREATED = datetime(2025, 7, 8, tzinfo=UTC)
LATER = datetime(2025, 7, 9, tzinfo=UTC)


def _activity(rows: list[tuple[int, datetime, datetime, int, list[float]]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "created_timestamp": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
            "events_7d": pa.array([r[3] for r in rows], pa.int64()),
            "categorical_event_vector": pa.array([r[4] for r in rows], pa.list_(pa.float32())),
        }
    )


def _write_world(store: Path) -> None:
    write_parquet_atomic(
        _activity(
            [
                (1, T1, CREATED, 5, [1.0, 0.0]),
                (1, T2, CREATED, 3, [0.5, 0.5]),
                (2, T1, CREATED, 9, [0.25, 0.75]),
                # user 2's T2 row was rewritten by a later run: the newer created_timestamp wins
                (2, T2, CREATED, 1, [0.0, 1.0]),
                (2, T2, LATER, 2, [0.0, 1.0]),
            ]
        ),
        store / "user_activity_features.parquet",
    )


def test_latest_rows_keeps_the_newest_snapshot_per_user(tmp_path: Path) -> None:
    _write_world(tmp_path)
    table = latest_rows(
        view_files(tmp_path, "user_activity_features"), ["events_7d", "categorical_event_vector"]
    )
    assert table.column_names == ["user_id", "event_timestamp", "events_7d", "categorical_event_vector"]
    assert table.column("user_id").to_pylist() == [1, 2]
    assert table.column("events_7d").to_pylist() == [3, 2]
    assert table.column("event_timestamp").to_pylist() == [T2, T2]


def test_the_engines_plan_and_duckdb_pick_the_same_rows_of_one_file(tmp_path: Path) -> None:
    _write_world(tmp_path)
    (path,) = view_files(tmp_path, "user_activity_features")
    features = ["events_7d", "categorical_event_vector"]
    planned, queried = latest_rows([path], features), latest_rows_by_duckdb([path], features)
    assert planned.to_pylist() == queried.to_pylist()
    assert planned.column("events_7d").to_pylist() == [3, 2]  # user 2's tie on time: the later created


def test_refresh_parts_count_as_newer_snapshots(tmp_path: Path) -> None:
    _write_world(tmp_path)
    part = append_part(
        tmp_path / "user_activity_features.parquet",
        _activity([(1, LATER, LATER, 0, [0.0, 0.0])]),
        part_name(LATER, LATER, "user1"),
    )
    assert part.parent == tmp_path / "refreshes" / "user_activity_features"
    snapshots = OfflineSnapshots.load(
        tmp_path, {"user_activity_features": ["events_7d", "categorical_event_vector"]}
    )
    assert snapshots.lookup(1, "user_activity_features") == (
        LATER,
        {"events_7d": 0, "categorical_event_vector": [0.0, 0.0]},
    )
    assert snapshots.lookup(2, "user_activity_features") == (
        T2,
        {"events_7d": 2, "categorical_event_vector": [0.0, 1.0]},
    )
    assert snapshots.lookup(3, "user_activity_features") is None
    assert snapshots.users == 2


def test_update_serves_a_refreshed_row_but_never_an_older_one(tmp_path: Path) -> None:
    _write_world(tmp_path)
    snapshots = OfflineSnapshots.load(tmp_path, {"user_activity_features": ["events_7d"]})
    snapshots.update("user_activity_features", 2, T1, {"events_7d": 100})
    assert snapshots.lookup(2, "user_activity_features") == (T2, {"events_7d": 2})
    snapshots.update("user_activity_features", 2, LATER, {"events_7d": 7})
    assert snapshots.lookup(2, "user_activity_features") == (LATER, {"events_7d": 7})
    snapshots.update("user_activity_features", 5, LATER, {"events_7d": 1})
    assert snapshots.users == 3


def test_load_names_the_missing_file_and_what_to_run(tmp_path: Path) -> None:
    import pytest

    from churnfs.errors import MissingDataError

    with pytest.raises(MissingDataError, match=r"user_review_features.*make features"):
        OfflineSnapshots.load(tmp_path, {"user_review_features": ["avg_rating"]})
