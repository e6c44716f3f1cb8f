"""``user_profile_features``: who the user is, as of each snapshot.

Also home to the snapshot population every group shares: one row per (user signed up strictly
before the as-of time, as-of time). Pure functions: Arrow or pandas in, Arrow out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

US_PER_DAY = 86_400 * 1_000_000
UTC_US = pa.timestamp("us", tz="UTC")

PROFILE_COLUMNS = ("age", "gender", "country", "income", "device", "premium")
"""Copied from ``user_table``; ``account_age_days`` is recomputed for each snapshot."""


def as_arrow(data: pa.Table | pd.DataFrame) -> pa.Table:
    """Accept a pandas frame or an Arrow table (tests use the first, the job the second)."""
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)


def timestamps_us(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Microseconds since the epoch (UTC) of a timezone-aware timestamp column, as int64."""
    return np.asarray(array.cast(UTC_US).cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def as_of_us(as_of_times: Sequence[datetime]) -> np.ndarray:
    """Sorted, de-duplicated as-of times in microseconds; naive datetimes are refused."""
    if any(t.tzinfo is None for t in as_of_times):
        raise ValueError("as-of times must be timezone-aware (UTC)")
    return timestamps_us(pa.array(sorted(set(as_of_times)), type=UTC_US))


def user_positions(user_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position in ``user_ids`` of each id in ``wanted``; -1 where it is not there. A lookup table
    when ids are dense (the usual 1..N), else a binary search."""
    if user_ids.size == 0:
        return np.full(wanted.size, -1, dtype=np.int64)
    low, high = int(user_ids.min()), int(user_ids.max())
    if high - low < 4 * user_ids.size + 1024:
        table = np.full(high - low + 1, -1, dtype=np.int64)
        table[user_ids - low] = np.arange(user_ids.size)
        inside = (wanted >= low) & (wanted <= high)
        return np.where(inside, table[np.clip(wanted - low, 0, high - low)], -1)
    by_id = np.argsort(user_ids, kind="stable")
    slot = np.minimum(np.searchsorted(user_ids[by_id], wanted), user_ids.size - 1)
    return np.where(user_ids[by_id][slot] == wanted, by_id[slot], -1).astype(np.int64)


def snapshot_index(users: pa.Table, as_of_times: Sequence[datetime]) -> tuple[np.ndarray, np.ndarray]:
    """Positions into ``users`` and as-of times (microseconds) of every snapshot row: each user
    whose ``signup_date`` is strictly before the as-of time, ordered by user id, then as-of time.

    Returns:
        (user_positions, as_of_us), two int64 arrays of equal length.
    """
    times = as_of_us(as_of_times)
    signup = timestamps_us(users.column("signup_date"))
    by_id = np.argsort(np.asarray(users.column("user_id").to_numpy(), dtype=np.int64), kind="stable")
    member = signup[by_id][:, None] < times[None, :]
    rank, time_index = np.nonzero(member)  # row-major: by user id, then time
    return by_id[rank].astype(np.int64), times[time_index]


def build_profile_features(users: pa.Table | pd.DataFrame, as_of_times: Sequence[datetime]) -> pa.Table:
    """Profile snapshots: ``user_id``, ``event_timestamp`` (the as-of time), the ``user_table``
    attributes, and ``account_age_days``, the whole days from signup to the as-of time.

    Args:
        users: clean ``user_table`` rows (the contract's columns).
        as_of_times: timezone-aware snapshot times.
    """
    users = as_arrow(users)
    positions, times = snapshot_index(users, as_of_times)
    take = pa.array(positions, type=pa.int64())
    signup = timestamps_us(users.column("signup_date"))[positions]
    account_age_days = (times - signup) // US_PER_DAY
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "user_id": users.column("user_id").take(take).cast(pa.int64()),
        "event_timestamp": pa.array(times, type=pa.int64()).cast(UTC_US),
    }
    for name in PROFILE_COLUMNS:
        columns[name] = users.column(name).take(take)
    columns["premium"] = columns["premium"].cast(pa.bool_())
    columns["income"] = columns["income"].cast(pa.float64())
    columns["age"] = columns["age"].cast(pa.int64())
    columns["account_age_days"] = pa.array(account_age_days, type=pa.int64())
    return pa.table(columns)
