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

from transformations.profile import US_PER_DAY, UTC_US, as_arrow, as_of_us, snapshot_index, timestamps_us
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
_C = {name: i for i, name in enumerate(CONTRIBUTIONS)}


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort events by (user, time, event id); return the sorted user positions, times, and the
    integer contributions of each event (columns: ``CONTRIBUTIONS``)."""
    by_id = np.argsort(ev["event_id"], kind="stable")  # ties in (user, time) fall back to event id
    order = by_id[stable_order(user_pos[by_id], ev["ts"][by_id])]
    user, ts, session = user_pos[order], ev["ts"][order], ev["session_id"][order]
    type_code, duration_us = ev["type_code"][order], ev["duration_us"][order]
    category_code = ev["category_code"][order]

    contrib = np.zeros((order.size, len(CONTRIBUTIONS)), dtype=np.int64)
    for i in range(len(EVENT_TYPES)):
        contrib[:, i] = type_code == i
    contrib[:, _C["mobile"]] = ev["mobile"][order]
    contrib[:, _C["spend_us"]] = np.where(
        type_code == EVENT_TYPES.index("purchase"), ev["price_us"][order], 0
    )

    # Growth of each session's visible length: a stable sort by (user, session) keeps time order.
    by_session = stable_order(user, session)
    s_end = ts[by_session] + duration_us[by_session]
    starts = first_in_group(user[by_session], session[by_session]).astype(bool)
    growth = np.where(starts, duration_us[by_session], s_end - np.roll(s_end, 1))
    contrib[by_session, _C["new_session"]] = starts
    contrib[by_session, _C["session_growth_us"]] = growth

    # A category counts once, at the user's first event carrying it.
    has_category = np.flatnonzero(category_code >= 0)
    by_category = has_category[stable_order(user[has_category], category_code[has_category])]
    contrib[by_category, _C["new_category"]] = first_in_group(user[by_category], category_code[by_category])
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
    by_id = np.argsort(user_ids, kind="stable")
    slot = np.minimum(np.searchsorted(user_ids[by_id], ev["user_id"]), max(user_ids.size - 1, 0))
    keep = ev.pop("usable") & (ev["ts"] < (times[-1] if times.size else np.iinfo(np.int64).min))
    keep &= user_ids[by_id][slot] == ev["user_id"] if user_ids.size else False
    kept = np.flatnonzero(keep)
    ev = {name: values[kept] for name, values in ev.items()}
    user_pos = by_id[slot[kept]].astype(np.int64)

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

    running = np.zeros((contrib.shape[0] + 1, contrib.shape[1]), dtype=np.int64)
    np.cumsum(contrib, axis=0, out=running[1:])
    del contrib
    at_base, at_now, at_30d = running[base], running[p_now], running[p_30d]
    so_far = at_now - at_base
    last_30d = at_now - at_30d
    del running, at_base, at_30d

    total = p_now - base
    type_counts = so_far[:, : len(EVENT_TYPES)]
    sessions = so_far[:, _C["new_session"]]
    session_length_us = so_far[:, _C["session_growth_us"]]
    events_30d = p_now - p_30d
    events_prev_30d = p_30d - p_60d
    mobile_30d = last_30d[:, _C["mobile"]]
    purchase = _C["type_purchase"]

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
        "add_to_cart_count": pa.array(type_counts[:, _C["type_add_to_cart"]], type=pa.int64()),
        "session_count": pa.array(sessions, type=pa.int64()),
        "avg_session_length": pa.array(
            np.where(sessions > 0, session_length_us / MICRO / np.maximum(sessions, 1), 0.0),
            type=pa.float64(),
        ),
        "last_active_days": pa.array((t - last_seen) / US_PER_DAY, type=pa.float64()),
        "categorical_event_vector": vector,
        "events_7d": pa.array(p_now - p_7d, type=pa.int64()),
        "events_30d": pa.array(events_30d, type=pa.int64()),
        "purchases_30d": pa.array(last_30d[:, purchase], type=pa.int64()),
        "support_contacts_30d": pa.array(last_30d[:, _C["type_support_contact"]], type=pa.int64()),
        "activity_trend": pa.array(
            (events_30d - events_prev_30d) / (events_30d + events_prev_30d + 1), type=pa.float64()
        ),
        "total_spend": pa.array(so_far[:, _C["spend_us"]] / MICRO, type=pa.float64()),
        "spend_30d": pa.array(last_30d[:, _C["spend_us"]] / MICRO, type=pa.float64()),
        "distinct_categories": pa.array(so_far[:, _C["new_category"]], type=pa.int64()),
        "mobile_share_30d": pa.array(
            np.where(events_30d > 0, mobile_30d / np.maximum(events_30d, 1), 0.0), type=pa.float64()
        ),
    }
    return pa.table(columns)
