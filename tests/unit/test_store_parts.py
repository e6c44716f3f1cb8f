"""Parts appended beside an offline-store file: where they go, how they are named, their schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnfs.store.parts import (
    append_part,
    conform_to_source,
    drop_parts,
    part_files,
    part_name,
    source_files,
)

END = datetime(2025, 7, 7, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created_timestamp", pa.timestamp("us", tz="UTC")),
        ("events_7d", pa.int64()),
    ]
)


def _batch_file(folder: Path) -> Path:
    path = folder / "user_activity_features.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{"user_id": 1, "event_timestamp": END, "created_timestamp": END, "events_7d": 4}], schema=SCHEMA
        ),
        path,
    )
    return path


def test_part_names_sort_by_as_of_time_then_by_write_time() -> None:
    first = part_name(END, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "user1")
    assert first == "20250707T000000000000-20260102T030405000006-user1.parquet"
    later_write = part_name(END, datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC), "user1")
    earlier_as_of = part_name(datetime(2025, 6, 30, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "user1")
    assert sorted([later_write, first, earlier_as_of]) == [earlier_as_of, first, later_write]


def test_a_part_lands_beside_its_file_in_the_files_schema_and_is_never_replaced(tmp_path: Path) -> None:
    source = _batch_file(tmp_path)
    # the refresh's columns in another order, events_7d as int32, with pandas-like metadata
    row = pa.table(
        {
            "events_7d": pa.array([9], pa.int32()),
            "user_id": pa.array([1], pa.int64()),
            "created_timestamp": pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            "event_timestamp": pa.array([END], pa.timestamp("us", tz="UTC")),
        }
    ).replace_schema_metadata({b"pandas": b"{}"})
    name = part_name(END, datetime(2026, 1, 1, tzinfo=UTC), "user1")
    path = append_part(source, row, name)
    assert path == tmp_path / "refreshes" / "user_activity_features" / name
    written = pq.read_table(path)
    assert written.schema == SCHEMA and written.schema.metadata is None
    assert written.column("events_7d").to_pylist() == [9]
    with pytest.raises(FileExistsError, match="never overwritten"):
        append_part(source, row, name)
    assert pq.read_table(path).column("events_7d").to_pylist() == [9]


def test_source_files_are_the_batch_file_then_its_parts(tmp_path: Path) -> None:
    source = tmp_path / "user_activity_features.parquet"
    assert source_files(source) == []
    rows = pa.Table.from_pylist(
        [{"user_id": 2, "event_timestamp": END, "created_timestamp": END, "events_7d": 0}], schema=SCHEMA
    )
    late = append_part(source, rows, part_name(END, datetime(2026, 2, 1, tzinfo=UTC), "user2"))
    early = append_part(source, rows, part_name(END, datetime(2026, 1, 1, tzinfo=UTC), "user2"))
    assert source_files(source) == [early, late]  # no batch file yet: parts only
    _batch_file(tmp_path)
    assert source_files(source) == [source, early, late]
    assert part_files(tmp_path / "user_review_features.parquet") == []


def test_conform_keeps_a_tables_own_columns_when_they_do_not_cover_the_files(tmp_path: Path) -> None:
    source = _batch_file(tmp_path)
    narrow = pa.table({"user_id": pa.array([1], pa.int64())})
    assert conform_to_source(narrow, source).column_names == ["user_id"]


def test_dropping_parts_removes_only_that_files_parts(tmp_path: Path) -> None:
    batch = _batch_file(tmp_path)
    other = tmp_path / "other.parquet"
    pq.write_table(pq.read_table(batch), other)
    row = pq.read_table(batch).slice(0, 1)
    first = part_name(datetime(2025, 7, 7, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "u1")
    second = part_name(datetime(2025, 7, 7, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), "u1")
    append_part(batch, row, first)
    append_part(batch, row, second)
    kept = append_part(other, row, first)
    assert drop_parts(batch) == 2
    assert source_files(batch) == [batch]
    assert source_files(other) == [other, kept]
    assert drop_parts(batch) == 0
