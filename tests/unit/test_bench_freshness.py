"""The stream benchmark's test of visibility (``bench.freshness``): a row counts a followed event
only when it is as of a later time and counts more events than the user's others before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from bench.freshness import Followed, followed_events

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _events(rows: list[tuple[str, int, int]]) -> pa.Table:
    """(event_id, user_id, seconds after T0) rows."""
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "user_id": pa.array([r[1] for r in rows], pa.int64()),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=r[2]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def test_a_followed_event_may_follow_the_users_stored_and_earlier_published_events() -> None:
    stored = _events([("s1", 1, 100), ("s2", 1, 200), ("s3", 2, 50), ("s4", 1, 900)])
    published = _events([("a", 1, 300), ("b", 2, 300), ("bad", 1, 300), ("c", 1, 300), ("d", 1, 400)])
    usable = published.filter(pa.array([i != "bad" for i in published.column("event_id").to_pylist()]))
    followed = followed_events(published, usable, stored, every=1)
    assert sorted(followed) == [0, 1, 3, 4]  # the unusable event is not followed
    t0 = T0.timestamp()
    assert followed[3] == Followed(1, t0 + 300, [t0 + 100, t0 + 200, t0 + 300, t0 + 900])
    assert followed[1] == Followed(2, t0 + 300, [t0 + 50])
    assert followed[4].before_s == [t0 + 100, t0 + 200, t0 + 300, t0 + 300, t0 + 900]


def test_a_row_counts_the_event_only_as_of_a_later_time_with_more_than_the_others() -> None:
    event = Followed(1, 300.0, [100.0, 200.0, 300.0, 900.0])
    assert not event.counted_in(300.0, 10)  # as of the event's own time: it is not before it
    assert not event.counted_in(301.0, 3)  # 100, 200 and the other event at 300
    assert event.counted_in(301.0, 4)
    assert not event.counted_in(1000.0, 4)  # as of 1000 the stored event at 900 counts too
    assert event.counted_in(1000.0, 5)
