"""Activity features on a tiny hand-made event log, every value computed by hand.

As-of times: T1 = 2025-02-03 00:00 UTC and T2 = 2025-03-03 00:00 UTC (both Mondays).
User 1 has three sessions, one of them straddling T1; user 2 has events exactly on the 30-day
window edge of T2; user 3 has no events; user 4 signs up exactly at T1; user 5 after T2.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transformations.activity import ACTIVITY_COLUMNS, build_activity_features
from transformations.validation import PARSED_EVENT_COLUMNS

T1 = datetime(2025, 2, 3, tzinfo=UTC)
T2 = datetime(2025, 3, 3, tzinfo=UTC)
DAY_S = 86_400.0


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


USERS = pd.DataFrame(
    {
        "user_id": [1, 2, 3, 4, 5],
        "signup_date": [
            ts("2024-12-01"),
            ts("2025-01-20 18:00"),
            ts("2025-01-25"),
            ts("2025-02-03"),
            ts("2025-03-10"),
        ],
    }
)

# event_id, user_id, session_id, time, type, category, device, duration, price
EVENTS = pd.DataFrame(
    [
        (1, 1, 10, ts("2025-01-10 10:00"), "page_view", "books", "ios", 30.0, None),
        (2, 1, 10, ts("2025-01-10 10:05"), "add_to_cart", "books", "ios", 20.0, 15.5),
        (3, 1, 10, ts("2025-01-10 10:10"), "purchase", "books", "ios", 10.0, 15.5),
        (4, 1, 11, ts("2025-02-02 23:50"), "search", "toys", "web", 60.0, None),
        (5, 1, 11, ts("2025-02-03 00:00"), "page_view", "garden", "android", 5.0, None),  # exactly T1
        (6, 1, 11, ts("2025-02-03 00:20"), "purchase", "toys", "android", 40.0, 100.0),
        (7, 1, 12, ts("2025-02-24 00:00"), "support_contact", "toys", "web", 100.0, None),  # T2 - 7d
        (8, 2, 20, ts("2025-02-01 00:00"), "wishlist", "home", "ios", 12.5, 9.99),  # T2 - 30d
        (9, 2, 21, ts("2025-01-31 23:59:59"), "page_view", None, "web", 3.0, None),
        (10, 1, 13, ts("2025-03-05 09:00"), "purchase", "music", "ios", 1.0, 50.0),  # after T2
    ],
    columns=list(PARSED_EVENT_COLUMNS),
)


def snapshot_rows(
    events: pd.DataFrame, as_of: list[datetime] | None = None
) -> dict[tuple[int, datetime], dict]:
    table = build_activity_features(events, USERS, as_of or [T1, T2])
    return {(r["user_id"], r["event_timestamp"]): r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def rows() -> dict[tuple[int, datetime], dict]:
    return snapshot_rows(EVENTS)


def test_one_row_per_user_signed_up_strictly_before_each_as_of(rows):
    assert sorted(rows) == [(1, T1), (1, T2), (2, T1), (2, T2), (3, T1), (3, T2), (4, T2)]


def test_columns_follow_the_data_model_order():
    table = build_activity_features(EVENTS, USERS, [T1])
    assert table.column_names == ["user_id", "event_timestamp", *ACTIVITY_COLUMNS]
    assert str(table.schema.field("categorical_event_vector").type) == "list<item: float>"
    assert str(table.schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"


def test_user_with_a_session_straddling_the_as_of_time(rows):
    r = rows[(1, T1)]  # events 1-4; event 5 is exactly at T1 and not visible
    assert r["total_events"] == 4
    assert r["purchase_count"] == 1
    assert r["add_to_cart_count"] == 1
    assert r["session_count"] == 2
    # session 10: 600 s + 10 s; session 11 as of T1: only event 4 -> 0 s + 60 s
    assert r["avg_session_length"] == pytest.approx((610 + 60) / 2)
    assert r["last_active_days"] == pytest.approx(600 / DAY_S)
    assert r["categorical_event_vector"] == pytest.approx([0.25, 0.25, 0.25, 0.25, 0.0, 0.0])
    assert r["events_7d"] == 1
    assert r["events_30d"] == 4
    assert r["purchases_30d"] == 1
    assert r["support_contacts_30d"] == 0
    assert r["activity_trend"] == pytest.approx(4 / 5)
    assert r["total_spend"] == pytest.approx(15.5)  # add_to_cart prices are not spend
    assert r["spend_30d"] == pytest.approx(15.5)
    assert r["distinct_categories"] == 2
    assert r["mobile_share_30d"] == pytest.approx(3 / 4)


def test_user_after_the_straddling_session_completes(rows):
    r = rows[(1, T2)]  # events 1-7; event 10 is after T2
    assert r["total_events"] == 7
    assert r["purchase_count"] == 2
    assert r["add_to_cart_count"] == 1
    assert r["session_count"] == 3
    # session 11 complete: 23:50 -> 00:20 is 1800 s + 40 s; session 12: one event, 100 s
    assert r["avg_session_length"] == pytest.approx((610 + 1840 + 100) / 3)
    assert r["last_active_days"] == pytest.approx(7.0)
    assert r["categorical_event_vector"] == pytest.approx([2 / 7, 1 / 7, 1 / 7, 2 / 7, 0.0, 1 / 7], rel=1e-6)
    assert r["events_7d"] == 1  # event 7 lies exactly on T2 - 7d: included
    assert r["events_30d"] == 4  # events 4-7
    assert r["purchases_30d"] == 1
    assert r["support_contacts_30d"] == 1
    assert r["activity_trend"] == pytest.approx((4 - 3) / (4 + 3 + 1))
    assert r["total_spend"] == pytest.approx(115.5)
    assert r["spend_30d"] == pytest.approx(100.0)
    assert r["distinct_categories"] == 3
    assert r["mobile_share_30d"] == pytest.approx(2 / 4)


def test_windowed_counts_at_the_window_edges(rows):
    early = rows[(2, T1)]
    assert early["events_7d"] == 2
    assert early["events_30d"] == 2
    assert early["activity_trend"] == pytest.approx(2 / 3)
    assert early["session_count"] == 2
    assert early["avg_session_length"] == pytest.approx((3 + 12.5) / 2)
    assert early["last_active_days"] == pytest.approx(2.0)
    assert early["categorical_event_vector"] == pytest.approx([0.5, 0, 0, 0, 0.5, 0])
    assert early["distinct_categories"] == 1  # a missing category is not a category
    assert early["mobile_share_30d"] == pytest.approx(0.5)
    assert early["total_spend"] == 0.0  # a wishlist price is not spend
    late = rows[(2, T2)]
    assert late["events_7d"] == 0
    assert late["events_30d"] == 1  # event 8 lies exactly on T2 - 30d: included
    assert late["activity_trend"] == pytest.approx(0.0)  # one event in each 30-day half
    assert late["last_active_days"] == pytest.approx(30.0)
    assert late["mobile_share_30d"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("user_id", "as_of", "days_since_signup"), [(3, T1, 9.0), (3, T2, 37.0), (4, T2, 28.0)]
)
def test_users_without_events_get_defined_values(rows, user_id, as_of, days_since_signup):
    r = rows[(user_id, as_of)]
    for column in (
        "total_events",
        "purchase_count",
        "add_to_cart_count",
        "session_count",
        "events_7d",
        "events_30d",
        "purchases_30d",
        "support_contacts_30d",
        "distinct_categories",
    ):
        assert r[column] == 0, column
    for column in ("avg_session_length", "activity_trend", "total_spend", "spend_30d", "mobile_share_30d"):
        assert r[column] == 0.0, column
    assert r["categorical_event_vector"] == [0.0] * 6
    assert r["last_active_days"] == pytest.approx(days_since_signup)


def test_no_events_at_all_gives_the_same_defaults():
    table = build_activity_features(EVENTS.iloc[:0], USERS, [T1])
    r = {row["user_id"]: row for row in table.to_pylist()}
    assert sorted(r) == [1, 2, 3]
    assert r[1]["total_events"] == 0
    assert r[1]["last_active_days"] == pytest.approx(64.0)


def test_dtypes_are_int64_counts_float64_reals_float32_vector():
    table = build_activity_features(EVENTS, USERS, [T1, T2])
    types = {f.name: str(f.type) for f in table.schema}
    assert types["total_events"] == types["session_count"] == types["distinct_categories"] == "int64"
    assert types["avg_session_length"] == types["activity_trend"] == types["mobile_share_30d"] == "double"


def test_session_ids_shared_by_two_users_are_two_sessions():
    events = EVENTS.copy()
    events.loc[events["event_id"] == 9, "session_id"] = 10  # user 2's session takes user 1's id
    rows = snapshot_rows(events, [T1])
    assert rows[(2, T1)]["session_count"] == 2
    assert rows[(1, T1)]["avg_session_length"] == pytest.approx((610 + 60) / 2)


def test_input_order_does_not_change_values():
    shuffled = EVENTS.sample(frac=1.0, random_state=3)
    assert build_activity_features(shuffled, USERS, [T1, T2]).equals(
        build_activity_features(EVENTS, USERS, [T1, T2])
    )


# --- the point-in-time property ------------------------------------------------------------

EVENT_TYPES = ["page_view", "search", "add_to_cart", "purchase", "wishlist", "support_contact"]
late_event = st.tuples(
    st.integers(min_value=1, max_value=4),  # user
    st.integers(min_value=0, max_value=40 * 86_400),  # seconds at or after T1
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(["books", "toys", "new", None]),
    st.sampled_from(["ios", "web", None]),
    st.floats(min_value=0, max_value=500, allow_nan=False),
    st.sampled_from([10, 11, 99]),  # existing sessions (straddling ones too) or a new one
)


@settings(max_examples=60, deadline=None)
@given(st.lists(late_event, min_size=1, max_size=12))
def test_events_at_or_after_an_as_of_time_never_change_that_snapshot(extra):
    before = build_activity_features(EVENTS, USERS, [T1])
    added = pd.DataFrame(
        [
            (1000 + i, user, session, T1 + pd.Timedelta(seconds=sec), kind, category, device, duration, 5.0)
            for i, (user, sec, kind, category, device, duration, session) in enumerate(extra)
        ],
        columns=EVENTS.columns,
    )
    after = build_activity_features(pd.concat([EVENTS, added], ignore_index=True), USERS, [T1])
    assert after.equals(before)


# --- against a plain, slow reference ---------------------------------------------------------


def reference_row(events: pd.DataFrame, signup: pd.Timestamp, t: pd.Timestamp) -> dict[str, object]:
    """The data model's definitions, spelled out row by row with pandas."""
    seen = events[events["event_timestamp"] < t].sort_values(["event_timestamp", "event_id"])
    day = pd.Timedelta(days=1)

    def window(lo: int, hi: int = 0) -> pd.DataFrame:
        times = seen["event_timestamp"]
        return seen[(times >= t - lo * day) & (times < t - hi * day)]

    lengths = [
        (s["event_timestamp"].iloc[-1] - s["event_timestamp"].iloc[0]).total_seconds()
        + (0.0 if pd.isna(s["duration"].iloc[-1]) else s["duration"].iloc[-1])
        for _, s in seen.groupby("session_id")
    ]
    last_30 = window(30)
    prev_30 = window(60, 30)
    spend = seen["price"].where(seen["event_type"] == "purchase").fillna(0.0)
    spend_30 = last_30["price"].where(last_30["event_type"] == "purchase").fillna(0.0)
    counts = [int((seen["event_type"] == kind).sum()) for kind in EVENT_TYPES]
    last = seen["event_timestamp"].max() if len(seen) else signup
    return {
        "total_events": len(seen),
        "purchase_count": counts[3],
        "add_to_cart_count": counts[2],
        "session_count": len(lengths),
        "avg_session_length": sum(lengths) / len(lengths) if lengths else 0.0,
        "last_active_days": (t - last) / day,
        "categorical_event_vector": [c / len(seen) if len(seen) else 0.0 for c in counts],
        "events_7d": len(window(7)),
        "events_30d": len(last_30),
        "purchases_30d": int((last_30["event_type"] == "purchase").sum()),
        "support_contacts_30d": int((last_30["event_type"] == "support_contact").sum()),
        "activity_trend": (len(last_30) - len(prev_30)) / (len(last_30) + len(prev_30) + 1),
        "total_spend": float(spend.sum()),
        "spend_30d": float(spend_30.sum()),
        "distinct_categories": seen["category"].dropna().nunique(),
        "mobile_share_30d": float(last_30["device"].isin(["ios", "android"]).mean()) if len(last_30) else 0.0,
    }


EDGES = [T1 - pd.Timedelta(days=d) for d in (0, 7, 30, 60)] + [T2 - pd.Timedelta(days=d) for d in (0, 7, 30)]
random_event = st.tuples(
    st.integers(min_value=1, max_value=3),  # user
    st.one_of(
        st.sampled_from(EDGES),  # exactly on a window edge or an as-of time
        st.integers(min_value=0, max_value=70 * 86_400).map(lambda s: T1 - pd.Timedelta(days=40, seconds=-s)),
    ),
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(["books", "toys", None]),
    st.sampled_from(["ios", "android", "web", None]),
    st.one_of(st.none(), st.integers(min_value=0, max_value=900).map(float)),
    st.sampled_from([1, 2, 3]),  # few sessions: interleaved, straddling, shared across users
    st.one_of(st.none(), st.integers(min_value=1, max_value=500).map(lambda c: c / 4)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(random_event, min_size=0, max_size=25))
def test_features_match_a_plain_row_by_row_reference(draws):
    users = pd.DataFrame(
        {"user_id": [1, 2, 3], "signup_date": [ts("2024-11-01"), ts("2024-11-01"), ts("2025-01-20")]}
    )
    events = pd.DataFrame(
        [
            (i, user, session, at, kind, category, device, duration, price)
            for i, (user, at, kind, category, device, duration, session, price) in enumerate(draws)
        ],
        columns=EVENTS.columns,
    )
    events = events[
        events["event_timestamp"] >= events["user_id"].map(users.set_index("user_id")["signup_date"])
    ]
    table = build_activity_features(events, users, [T1, T2])
    for row in table.to_pylist():
        signup = users.set_index("user_id").loc[row["user_id"], "signup_date"]
        mine = events[events["user_id"] == row["user_id"]]
        expected = reference_row(mine, signup, pd.Timestamp(row["event_timestamp"]))
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name


def test_user_ranges_cover_every_id_once_with_at_most_n_users_each():
    import numpy as np

    from transformations.engines.duckdb import user_ranges

    ids = np.array([9, 3, 5, 1, 7, 11, 3])
    assert user_ranges(ids, 2) == [(None, 5), (5, 9), (9, None)]
    assert user_ranges(ids, 10) == [(None, None)]
    assert user_ranges(np.array([], dtype=np.int64), 3) == [(None, None)]
