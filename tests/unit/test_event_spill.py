"""The event spill: a world's kept events go to disk day by day and come back one slice of users
at a time, ordered by user then time, with each event's rank in the whole world's time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datagen.events import DIRTY_NULL_USER, Events, EventSpill


def _events(users: list[int], times: list[int], sessions: list[int], null_user: list[bool]) -> Events:
    n = len(users)
    small = np.zeros(n, dtype=np.int8)
    return Events(
        user_index=np.array(users, dtype=np.int64),
        session_id=np.array(sessions, dtype=np.int64),
        day=np.zeros(n),
        timestamp_us=np.array(times, dtype=np.int64),
        event_type=small,
        category=small,
        device=small,
        duration_tenths=np.ones(n, dtype=np.int64),
        price_cents=np.full(n, 100, dtype=np.int64),
        dirty_kind=np.where(null_user, DIRTY_NULL_USER, 0).astype(np.int8),
        dirty_choice=small,
        dirty_shift_days=np.zeros(n),
    )


def test_spilled_events_come_back_per_user_slice_in_user_then_time_order(tmp_path: Path) -> None:
    folder = tmp_path / "spill"
    with EventSpill(folder, slice_users=2, n_users=4) as spill:
        # draw order 0..3 on the first day, 4..5 on the second; the second day's 15 is earlier
        # than most of the first day's, so the ranks come from all days at once
        spill.append(_events([3, 0, 1, 3], [50, 10, 30, 20], [1, 1, 2, 2], [False, False, False, True]))
        spill.append(_events([2, 0], [15, 40], [3, 4], [False, False]))
        spill.finish()
    assert (spill.n, spill.n_sessions, spill.last_user) == (6, 4, 3)
    assert spill.time_rank.tolist() == [5, 0, 3, 2, 1, 4]

    slices = [(events.user_index.tolist(), rank.tolist()) for events, rank in spill.user_slices()]
    # users 0-1; then users 2-3 with the null-user row (drawn for user 3 at time 20) last
    assert slices == [([0, 0, 1], [0, 4, 3]), ([2, 3, 3], [1, 5, 2])]
    last_events, _ = list(spill.user_slices())[-1]
    assert last_events.timestamp_us.tolist() == [15, 50, 20]
    assert last_events.dirty_kind.tolist() == [0, 0, DIRTY_NULL_USER]


def test_a_spill_with_no_events_yields_no_slice(tmp_path: Path) -> None:
    with EventSpill(tmp_path / "spill", slice_users=2, n_users=4) as spill:
        spill.append(_events([], [], [], []))
        spill.finish()
    assert (spill.n, spill.n_sessions) == (0, 0)
    assert list(spill.user_slices()) == []
