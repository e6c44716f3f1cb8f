"""``user_activity_features``: what the user did before each as-of time, from ``event_logs``.

How the point-in-time logic stays exact and fast: every event is turned into integer
*contributions* (one per event type, mobile or not, micro-dollars spent, a new session, a new
category, and the growth of its session's visible length), events are sorted by (user, time),
and each contribution gets a running sum. The value of any feature over ``[a, b)`` for a user is
then a difference of two running sums at two positions found by binary search, so all snapshots
of all users cost one sort and a few vectorised searches, and sums of integers make the result
exact and independent of the order of work (a re-run, or the refresh of one user, gives
bit-identical values).

A session straddling an as-of time ``t`` is seen as of ``t`` through its events before ``t``
only: its visible length is (last event before ``t`` - first event) + that last event's
duration. Each event contributes the growth of that visible length, so the running sum up to
``t`` is the sum of the visible lengths of all sessions started before ``t``.

Rules for users without events yet: counts, shares and lengths are 0, ``last_active_days`` is the
days since signup, ``mobile_share_30d`` is 0 when there are no events in the last 30 days.
Metadata fields: a missing ``duration`` counts 0 seconds, a missing ``price`` 0 USD, a missing
``category`` is not a category, a missing ``device`` is not mobile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transformations.profile import (
    US_PER_DAY,
    UTC_US,
    as_arrow,
    as_of_us,
    snapshot_index,
    timestamps_us,
    user_positions,
)
from transformations.validation import EVENT_TYPES

MOBILE_DEVICES = ("ios", "android")
WINDOW_7D_US = 7 * US_PER_DAY
WINDOW_30D_US = 30 * US_PER_DAY
WINDOW_60D_US = 60 * US_PER_DAY
MICRO = 1_000_000

ACTIVITY_COLUMNS = (
    "total_events",
    "purchase_count",
    "add_to_cart_count",
    "session_count",
    "avg_session_length",
    "last_active_days",
    "categorical_event_vector",
    "events_7d",
    "events_30d",
    "purchases_30d",
    "support_contacts_30d",
    "activity_trend",
    "total_spend",
    "spend_30d",
    "distinct_categories",
    "mobile_share_30d",
)
"""The group's features, in the order of docs/data-model.md."""

CONTRIBUTIONS = (
    *(f"type_{t}" for t in EVENT_TYPES),
    "mobile",
    "spend_us",
    "new_session",
    "session_growth_us",
    "new_category",
)
"""What each event adds to the running sums (integers: counts, micro-dollars, microseconds)."""


def _int64(array: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def _micros(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Round a float column (seconds or USD) to integer millionths; null counts 0."""
    values = pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False)
    return np.rint(np.asarray(values, dtype=np.float64) * MICRO).astype(np.int64)


def stable_order(*keys: np.ndarray) -> np.ndarray:
    """Stable sort order of rows by int64 ``keys`` (most significant first).

    Packs the keys into one int64 when their ranges allow it (one radix-friendly argsort instead
    of a multi-pass ``lexsort``, about five times faster), else falls back to ``np.lexsort``.
    """
    if keys[0].size == 0:
        return np.empty(0, dtype=np.int64)
    packed = np.zeros(keys[0].size, dtype=np.int64)
    capacity = 1
    for key in keys:
        low = int(key.min())
        span = int(key.max()) - low + 1
        capacity *= span
        if capacity >= 2**62:
            return np.lexsort(keys[::-1])
        packed = packed * span + (key - low)
    return np.argsort(packed, kind="stable")


def first_in_group(*keys: np.ndarray) -> np.ndarray:
    """Flags (int64) marking the first row of each run of equal ``keys`` in sorted data."""
    first = np.ones(keys[0].size, dtype=bool)
    if keys[0].size:
        same = np.ones(keys[0].size - 1, dtype=bool)
        for key in keys:
            same &= key[1:] == key[:-1]
        first[1:] = ~same
    return first.astype(np.int64)


def _event_arrays(events: pa.Table) -> dict[str, np.ndarray]:
    """The parsed events as numpy columns: ids, microsecond times, integer codes and amounts."""

    def valid(name: str) -> np.ndarray:
        return np.asarray(pc.is_valid(events.column(name)), dtype=bool)

    category = pc.dictionary_encode(events.column("category").combine_chunks())
    is_mobile = pc.is_in(events.column("device"), value_set=pa.array(MOBILE_DEVICES))
    return {
        "usable": valid("user_id") & valid("session_id") & valid("event_timestamp"),
        "event_id": _int64(events.column("event_id")),
        "user_id": _int64(events.column("user_id")),
        "session_id": _int64(events.column("session_id")),
        "ts": _int64(events.column("event_timestamp").cast(pa.int64())),
        "type_code": _int64(
            pc.index_in(events.column("event_type"), value_set=pa.array(EVENT_TYPES)), fill=-1
        ),
        "mobile": np.asarray(pc.fill_null(is_mobile, False), dtype=bool),
        "duration_us": _micros(events.column("duration")),
        "price_us": _micros(events.column("price")),
        "category_code": _int64(category.indices, fill=-1),
    }


def _event_contributions(
    ev: dict[str, np.ndarray], user_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Sort events by (user, time, event id); return the sorted user positions, times, and the
    integer contributions of each event (``CONTRIBUTIONS``)."""
    event_id = ev["event_id"]
    if (np.diff(event_id) > 0).all():  # the usual case: already in event id order
        order = stable_order(user_pos, ev["ts"])
    else:  # ties in (user, time) fall back to event id
        by_id = np.argsort(event_id, kind="stable")
        order = by_id[stable_order(user_pos[by_id], ev["ts"][by_id])]
    user, ts, session = user_pos[order], ev["ts"][order], ev["session_id"][order]
    type_code, duration_us = ev["type_code"][order], ev["duration_us"][order]
    category_code = ev["category_code"][order]

    contrib = {f"type_{name}": (type_code == i).astype(np.int64) for i, name in enumerate(EVENT_TYPES)}
    contrib["mobile"] = ev["mobile"][order].astype(np.int64)
    contrib["spend_us"] = np.where(type_code == EVENT_TYPES.index("purchase"), ev["price_us"][order], 0)

    # Growth of each session's visible length: a stable sort by (user, session) keeps time order.
    by_session = stable_order(user, session)
    s_end = ts[by_session] + duration_us[by_session]
    starts = first_in_group(user[by_session], session[by_session])
    growth = np.where(starts == 1, duration_us[by_session], s_end - np.roll(s_end, 1))
    contrib["new_session"] = np.empty_like(starts)
    contrib["new_session"][by_session] = starts
    contrib["session_growth_us"] = np.empty_like(growth)
    contrib["session_growth_us"][by_session] = growth

    # A category counts once, at the user's first event carrying it.
    has_category = np.flatnonzero(category_code >= 0)
    by_category = has_category[stable_order(user[has_category], category_code[has_category])]
    contrib["new_category"] = np.zeros(order.size, dtype=np.int64)
    contrib["new_category"][by_category] = first_in_group(user[by_category], category_code[by_category])
    return user, ts, contrib


PARSED_EVENT_TYPES: dict[str, pa.DataType] = {
    "event_id": pa.int64(),
    "user_id": pa.int64(),
    "session_id": pa.int64(),
    "event_timestamp": UTC_US,
    "event_type": pa.string(),
    "category": pa.string(),
    "device": pa.string(),
    "duration": pa.float64(),
    "price": pa.float64(),
}
"""The parsed event columns this group reads (``validation.PARSED_EVENT_COLUMNS``) and their types."""


def _parsed_events(events: pa.Table | pd.DataFrame) -> pa.Table:
    table = as_arrow(events)
    return pa.table({name: table.column(name).cast(dtype) for name, dtype in PARSED_EVENT_TYPES.items()})


def build_activity_features(
    events: pa.Table | pd.DataFrame,
    users: pa.Table | pd.DataFrame,
    as_of_times: Sequence[datetime],
) -> pa.Table:
    """Activity snapshots: one row per (user signed up before ``t``, ``t``) with the features of
    ``ACTIVITY_COLUMNS``, each computed from the user's events strictly before ``t``.

    Args:
        events: clean, parsed events (``transformations.validation.PARSED_EVENT_COLUMNS``);
            rows without user, session or time are ignored.
        users: ``user_id`` and ``signup_date`` of every user.
        as_of_times: timezone-aware snapshot times.
    """
    users = as_arrow(users)
    events = _parsed_events(events)
    times = as_of_us(as_of_times)
    positions, t = snapshot_index(users, as_of_times)
    user_ids = np.asarray(users.column("user_id").to_numpy(), dtype=np.int64)
    signup = timestamps_us(users.column("signup_date"))

    # Only events that some snapshot can see, of known users, with the keys the logic needs.
    ev = _event_arrays(events)
    user_pos = user_positions(user_ids, ev["user_id"])
    keep = ev.pop("usable") & (user_pos >= 0)
    keep &= ev["ts"] < (times[-1] if times.size else np.iinfo(np.int64).min)
    kept = np.flatnonzero(keep)
    ev = {name: values[kept] for name, values in ev.items()}
    user_pos = user_pos[kept]

    ev_user, ev_ts, contrib = _event_contributions(ev, user_pos)
    del ev

    # Sorted key (user position, number of query times <= event time): for a snapshot row and a
    # query time x, a binary search gives the position just after the user's last event before x.
    # Snapshot rows are sorted by (user, time) too, so the searches and gathers walk forward.
    offsets = np.array([0, WINDOW_7D_US, WINDOW_30D_US, WINDOW_60D_US], dtype=np.int64)
    grid = np.unique((times[:, None] - offsets[None, :]).ravel())
    stride = np.int64(grid.size + 1)
    key = ev_user * stride + np.searchsorted(grid, ev_ts, side="right")

    def position_before(x: np.ndarray) -> np.ndarray:
        return np.searchsorted(key, positions * stride + np.searchsorted(grid, x) + 1, side="left")

    base = np.searchsorted(key, positions * stride, side="left")
    p_now = position_before(t)
    p_7d = position_before(t - WINDOW_7D_US)
    p_30d = position_before(t - WINDOW_30D_US)
    p_60d = position_before(t - WINDOW_60D_US)

    running = {name: np.concatenate([np.zeros(1, np.int64), np.cumsum(c)]) for name, c in contrib.items()}
    del contrib

    def so_far(name: str) -> np.ndarray:
        return running[name][p_now] - running[name][base]

    def last_30d(name: str) -> np.ndarray:
        return running[name][p_now] - running[name][p_30d]

    total = p_now - base
    type_counts = np.stack([so_far(f"type_{name}") for name in EVENT_TYPES], axis=1)
    sessions = so_far("new_session")
    session_length_us = so_far("session_growth_us")
    events_30d = p_now - p_30d
    events_prev_30d = p_30d - p_60d
    mobile_30d = last_30d("mobile")
    purchase = EVENT_TYPES.index("purchase")

    has_events = total > 0
    last_seen = np.where(has_events, ev_ts[np.maximum(p_now - 1, 0)] if ev_ts.size else 0, signup[positions])
    safe_total = np.maximum(total, 1)
    shares = (type_counts / safe_total[:, None]).astype(np.float32)
    vector = pa.ListArray.from_arrays(
        pa.array(np.arange(0, shares.size + 1, len(EVENT_TYPES), dtype=np.int32)),
        pa.array(shares.ravel(), type=pa.float32()),
    )
    columns: dict[str, pa.Array] = {
        "user_id": pa.array(user_ids[positions], type=pa.int64()),
        "event_timestamp": pa.array(t, type=pa.int64()).cast(UTC_US),
        "total_events": pa.array(total, type=pa.int64()),
        "purchase_count": pa.array(type_counts[:, purchase], type=pa.int64()),
        "add_to_cart_count": pa.array(type_counts[:, EVENT_TYPES.index("add_to_cart")], type=pa.int64()),
        "session_count": pa.array(sessions, type=pa.int64()),
        "avg_session_length": pa.array(
            np.where(sessions > 0, session_length_us / MICRO / np.maximum(sessions, 1), 0.0),
            type=pa.float64(),
        ),
        "last_active_days": pa.array((t - last_seen) / US_PER_DAY, type=pa.float64()),
        "categorical_event_vector": vector,
        "events_7d": pa.array(p_now - p_7d, type=pa.int64()),
        "events_30d": pa.array(events_30d, type=pa.int64()),
        "purchases_30d": pa.array(last_30d("type_purchase"), type=pa.int64()),
        "support_contacts_30d": pa.array(last_30d("type_support_contact"), type=pa.int64()),
        "activity_trend": pa.array(
            (events_30d - events_prev_30d) / (events_30d + events_prev_30d + 1), type=pa.float64()
        ),
        "total_spend": pa.array(so_far("spend_us") / MICRO, type=pa.float64()),
        "spend_30d": pa.array(last_30d("spend_us") / MICRO, type=pa.float64()),
        "distinct_categories": pa.array(so_far("new_category"), type=pa.int64()),
        "mobile_share_30d": pa.array(
            np.where(events_30d > 0, mobile_30d / np.maximum(events_30d, 1), 0.0), type=pa.float64()
        ),
    }
    return pa.table(columns)
