"""The stream's pure micro-batch logic (``transformations.stream``) and the raw store the batch
job reads with the stream's parts (``transformations.groups.read_raw_table``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from churnfs.settings import Settings
from churnfs.store.parts import STREAM_PARTS_DIR, append_part
from transformations.groups import read_raw_table
from transformations.stream import (
    MALFORMED,
    STREAM_ID,
    decode_entries,
    drop_known_events,
    encode_events,
    horizon,
    merge_ids,
    stream_as_of,
)

T0 = datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
END = datetime(2025, 7, 7, tzinfo=UTC)


def _events(ids: list[int], users: list[int | None]) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "event_id": pa.array(ids, type=pa.int64()),
            "user_id": pa.array(users, type=pa.int64()),
            "session_id": pa.array([7] * n, type=pa.int64()),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=i) for i in range(n)], type=pa.timestamp("us", tz="UTC")
            ),
            "event_type": pa.array(["purchase"] * n),
            "metadata": pa.array(['{"price": 9.5}'] * n),
        }
    )


def test_stream_entries_decode_back_to_the_raw_rows_they_encode() -> None:
    events = _events([1, 2, 3], [10, None, 11])
    entries = encode_events(events)
    assert "user_id" not in entries[1]  # a null column is left out of the entry
    decoded = decode_entries(
        [
            (f"1700000000000-{i}".encode(), {k.encode(): v.encode() for k, v in e.items()})
            for i, e in enumerate(entries)
        ]
    )
    assert decoded.malformed.num_rows == 0
    assert decoded.events.drop_columns([STREAM_ID]).equals(events)
    assert decoded.events.column(STREAM_ID).to_pylist() == [f"1700000000000-{i}" for i in range(3)]


def test_a_batch_decodes_alike_a_column_or_an_entry_at_a_time() -> None:
    events = _events([1, 2, 3], [10, None, 11])
    entries = [
        (f"1-{i}".encode(), {k.encode(): v.encode() for k, v in e.items()})
        for i, e in enumerate(encode_events(events))
    ]
    by_column = decode_entries(entries)  # well-formed: a column at a time
    with_a_bad_one = decode_entries([*entries, (b"1-9", {b"event_id": b"x"})])  # an entry at a time
    assert with_a_bad_one.malformed.num_rows == 1
    assert with_a_bad_one.events.equals(by_column.events)


def test_entries_that_are_no_event_are_malformed_with_the_bad_field_named() -> None:
    good = encode_events(_events([1], [10]))[0]
    decoded = decode_entries(
        [
            ("1-0", {**good, "event_id": "abc"}),
            ("1-1", {k: v for k, v in good.items() if k != "event_id"}),
            ("1-2", {**good, "event_timestamp": "2025-06-01T12:00:00"}),
            ("1-3", {**good, "user_id": "x1"}),
            ("1-4", good),
        ]
    )
    assert decoded.events.column(STREAM_ID).to_pylist() == ["1-4"]
    reasons = decoded.malformed.column("reason").to_pylist()
    assert all(r.startswith(MALFORMED) for r in reasons)
    assert "event_id 'abc' is not an integer" in reasons[0]
    assert "event_id missing" in reasons[1]
    assert "no time zone" in reasons[2]
    assert "user_id 'x1'" in reasons[3]
    assert decoded.malformed.column("user_id").to_pylist()[:3] == [10, 10, 10]  # what could be read


def test_repeated_and_already_stored_events_are_dropped() -> None:
    events = _events([5, 6, 5, 7, 8], [1, 1, 1, 2, 2])
    dedup = drop_known_events(events, np.array([2, 7], dtype=np.int64))
    assert dedup.new.column("event_id").to_pylist() == [5, 6, 8]
    assert dedup.repeats == 2
    assert drop_known_events(events, np.empty(0, dtype=np.int64)).new.num_rows == 4


def test_merged_ids_stay_sorted_and_unique() -> None:
    known = np.array([2, 5, 9], dtype=np.int64)
    assert merge_ids(known, np.array([7, 1, 5, 7, 12], dtype=np.int64)).tolist() == [1, 2, 5, 7, 9, 12]
    assert merge_ids(known, np.array([5, 9], dtype=np.int64)) is known  # nothing new: no copy
    assert merge_ids(np.empty(0, dtype=np.int64), np.array([3, 1, 3])).tolist() == [1, 3]


def test_a_micro_batch_is_as_of_the_second_after_its_newest_event_never_back_in_time() -> None:
    assert horizon(T0) == datetime(2025, 6, 1, 12, 0, 1, tzinfo=UTC)
    assert stream_as_of(T0, None, END) == horizon(T0)
    later = horizon(T0) + timedelta(minutes=5)
    assert stream_as_of(T0, later, END) == later  # the clock: another consumer wrote further on
    assert stream_as_of(END - timedelta(microseconds=1), None, END) == END


def test_the_raw_reader_takes_the_streams_parts_with_the_generated_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    raw_file = settings.raw_dir / "event_logs.parquet"
    raw_file.parent.mkdir(parents=True)
    pq.write_table(_events([1, 2], [10, 11]), raw_file)
    append_part(raw_file, _events([3, 4], [11, 12]), "part-a.parquet", folder=STREAM_PARTS_DIR)
    assert read_raw_table(settings, "event_logs").column("event_id").to_pylist() == [1, 2, 3, 4]
    assert read_raw_table(settings, "event_logs", user_id=11).column("event_id").to_pylist() == [2, 3]
    assert read_raw_table(settings, "event_logs", user_ids=[12, 10]).column("event_id").to_pylist() == [1, 4]
    assert read_raw_table(settings, "event_logs", user_ids=[]).num_rows == 0


def test_how_far_the_raw_data_reaches_counts_the_streams_parts(tmp_path: Path) -> None:
    from transformations.refresh import newest_raw_time

    settings = Settings(data_dir=tmp_path)
    settings.raw_dir.mkdir(parents=True)
    stamp = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table({"signup_date": pa.array([T0 - timedelta(days=9)], stamp)}),
        settings.raw_dir / "user_table.parquet",
    )
    pq.write_table(
        pa.table({"review_timestamp": pa.array([T0], stamp)}), settings.raw_dir / "review_table.parquet"
    )
    raw_file = settings.raw_dir / "event_logs.parquet"
    pq.write_table(_events([1], [10]), raw_file)
    assert newest_raw_time(settings, END) == T0
    append_part(raw_file, _events([2, 3, 4], [10, 10, 10]), "part-a.parquet", folder=STREAM_PARTS_DIR)
    assert newest_raw_time(settings, END) == T0 + timedelta(seconds=2)
