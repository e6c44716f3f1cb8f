"""The bulk engine's reader picks Feast's latest row per user; the consistency comparison rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from churnfs.store.consistency import _equal
from churnfs.store.engine import LatestRows

D = datetime(2025, 1, 6, tzinfo=UTC)
STAMP = pa.timestamp("us", tz="UTC")


def _write(path: Path) -> None:
    day = timedelta(days=1)
    table = pa.table(
        {
            "user_id": pa.array([1, 1, 2, 2, 2, 3, 1, 4], type=pa.int64()),
            "event_timestamp": pa.array(
                [D, D + day, D + day, D + day, D + 3 * day, D + day, D + 5 * day, D - day],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "created_timestamp": pa.array(
                [D, D + day, D + day, D + 2 * day, D + 3 * day, D + day, D + 5 * day, D],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "value": pa.array([10, 11, 20, 21, 23, 30, 15, 40], type=pa.int64()),
        }
    )
    pq.write_table(table, path, row_group_size=3)  # three row groups


def _latest(tmp_path: Path, created: str | None, start: datetime, end: datetime) -> pa.Table:
    """The latest rows of the test file in ``[start, end]``, as the bulk engine reads them."""
    path = tmp_path / "g.parquet"
    _write(path)
    return LatestRows.plan(path, "user_id", "event_timestamp", created, ["value"], start, end).read()


def test_latest_row_per_user_inside_the_window_wins(tmp_path: Path) -> None:
    out = _latest(tmp_path, "created_timestamp", D, D + 2 * timedelta(days=1))
    got = dict(zip(out.column("user_id").to_pylist(), out.column("value").to_pylist(), strict=True))
    # user 1: day 5 is after the end -> day 1; user 2: tie on day 1 broken by the later created time;
    # user 3: its only row; user 4: its only row is before the start.
    assert got == {1: 11, 2: 21, 3: 30}
    assert out.column("user_id").to_pylist() == [1, 2, 3]  # ordered by entity
    assert set(out.column_names) >= {"user_id", "event_timestamp", "created_timestamp", "value"}


def test_window_bounds_are_inclusive_like_feast(tmp_path: Path) -> None:
    out = _latest(tmp_path, None, D + timedelta(days=3), D + timedelta(days=5))
    assert sorted(zip(out.column("user_id").to_pylist(), out.column("value").to_pylist(), strict=True)) == [
        (1, 15),
        (2, 23),
    ]


def test_a_window_without_rows_gives_an_empty_table(tmp_path: Path) -> None:
    out = _latest(tmp_path, None, D + timedelta(days=30), D + timedelta(days=40))
    assert out.num_rows == 0 and out.column_names == ["user_id", "event_timestamp", "value"]


def test_time_ordered_row_groups_are_read_newest_first_with_the_same_result(tmp_path: Path) -> None:
    """A file whose row groups cover disjoint times (the offline store's layout) is planned row
    group by row group, newest first; the rows are those of the whole-file plan."""
    from churnfs.store.engine import _time_spans

    overlapping, by_time = tmp_path / "overlapping.parquet", tmp_path / "by_time.parquet"
    _write(overlapping)  # row groups of 3: their times overlap
    table = pq.read_table(overlapping).sort_by([("event_timestamp", "ascending"), ("user_id", "ascending")])
    times = table.column("event_timestamp")
    with pq.ParquetWriter(by_time, table.schema) as writer:
        for t in sorted(set(times.to_pylist())):
            writer.write_table(table.filter(pc.equal(times, pa.scalar(t, times.type))))
    assert pq.ParquetFile(by_time).num_row_groups == 5
    assert _time_spans(pq.ParquetFile(overlapping), "event_timestamp", "user_id") is None
    assert _time_spans(pq.ParquetFile(by_time), "event_timestamp", "user_id") is not None
    day = timedelta(days=1)
    windows = (
        (D, D + 2 * day),
        (D - day, D + 10 * day),
        (D + 3 * day, D + 5 * day),
        (D + 30 * day, D + 40 * day),
    )
    for created in ("created_timestamp", None):
        for start, end in windows:
            args = ("user_id", "event_timestamp", created, ["value"], start, end)
            whole = LatestRows.plan(overlapping, *args).read()
            newest_first = LatestRows.plan(by_time, *args).read()
            assert newest_first.to_pylist() == whole.to_pylist(), (created, start, end)


def _snapshots(path: Path, users_per_group: int, shuffle_users: bool = False) -> None:
    """Three as-of times of users 1..5 (user 5 only from the second), each time cut into row
    groups of ``users_per_group`` users, in user order unless ``shuffle_users``."""
    day = timedelta(days=1)
    schema = pa.schema([("user_id", pa.int64()), ("event_timestamp", STAMP), ("value", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for k in range(3):
            users = [1, 2, 3, 4] + ([5] if k else [])
            if shuffle_users:
                users = [3, 1, 5, 2, 4] if k else [3, 1, 2, 4]
            for offset in range(0, len(users), users_per_group):
                chunk = users[offset : offset + users_per_group]
                writer.write_table(
                    pa.table(
                        {
                            "user_id": pa.array(chunk, pa.int64()),
                            "event_timestamp": pa.array([D + k * day] * len(chunk), STAMP),
                            "value": pa.array([10 * u + k for u in chunk], pa.int64()),
                        }
                    )
                )


def test_as_of_times_cut_into_ranges_of_users_are_read_newest_first(tmp_path: Path) -> None:
    """The offline store's layout at scale: each as-of time in several row groups of disjoint user
    ranges. They share one instant, yet no user has two rows of it, so the newest-first plan holds
    and picks every user's last as-of time; groups of one instant whose users overlap fall back to
    the whole-file sort, with the same rows."""
    from churnfs.store.engine import _time_spans

    ranges, shuffled = tmp_path / "ranges.parquet", tmp_path / "shuffled.parquet"
    _snapshots(ranges, 2)
    _snapshots(shuffled, 2, shuffle_users=True)
    assert pq.ParquetFile(ranges).num_row_groups == 8
    assert _time_spans(pq.ParquetFile(ranges), "event_timestamp", "user_id") is not None
    assert _time_spans(pq.ParquetFile(shuffled), "event_timestamp", "user_id") is None
    for path in (ranges, shuffled):
        for end, expected in ((D + timedelta(days=9), [12, 22, 32, 42, 52]), (D, [10, 20, 30, 40])):
            got = LatestRows.plan(path, "user_id", "event_timestamp", None, ["value"], D, end).read()
            assert got.column("value").to_pylist() == expected, (path.name, end)
            assert got.column("user_id").to_pylist() == sorted(got.column("user_id").to_pylist())


def test_equal_compares_floats_to_1e6_vectors_elementwise_and_missing_values() -> None:
    assert _equal(0.1 + 0.2, 0.3)
    assert not _equal(1.0, 1.00001)
    assert _equal(400_000.0, 400_000.0001)  # relative above 1
    assert _equal([0.1, 0.2], [0.1000000001, 0.2])
    assert not _equal([0.1, 0.2], [0.1, 0.2, 0.0])
    assert not _equal([0.1, 0.2], [0.1, 0.3])
    assert _equal(None, float("nan"))
    assert not _equal(None, 0)
    assert _equal(7, 7) and not _equal(7, 8)
    assert _equal(True, True) and not _equal(True, False)
    assert _equal("fr", "fr") and not _equal("fr", "de")


def test_prefetch_yields_in_order_and_hands_a_failure_to_the_consumer() -> None:
    from churnfs.store.engine import _Prefetch

    assert list(_Prefetch(iter(range(7)), depth=2)) == list(range(7))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("row group 2 is corrupt")

    prefetch = _Prefetch(failing())
    with pytest.raises(ValueError, match="corrupt"):
        list(prefetch)
    prefetch.close()


def test_prefetch_stops_producing_when_the_consumer_closes_it_early() -> None:
    from churnfs.store.engine import _Prefetch

    produced: list[int] = []

    def counting() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    prefetch = _Prefetch(counting(), depth=2)
    first = next(iter(prefetch))
    prefetch.close()  # returns: the producer notices instead of blocking on a full queue
    assert first == 0 and len(produced) < 10


def test_seen_entities_are_new_once_whether_kept_as_flags_or_sorted_ids() -> None:
    import numpy as np

    from churnfs.store.engine import _Seen

    seen = _Seen()
    assert seen.add(np.array([5, 2, 9])).tolist() == [True, True, True]
    assert seen.add(np.array([2, 7])).tolist() == [False, True]
    assert seen.add(np.array([1 << 40, 9, 3])).tolist() == [True, False, True]  # past the bitmap
    assert seen.add(np.array([7, 1 << 40, -4])).tolist() == [False, False, True]
    assert seen.add(np.array([], dtype=np.int64)).tolist() == []
