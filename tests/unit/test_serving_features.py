"""Merging online and offline rows into one feature vector, view by view."""

from __future__ import annotations

from datetime import UTC, datetime

from serving.features import merge_feature_vector
from serving.online import FeatureLayout, parse_redis_connection_string, rows_from_online_columns

LAYOUT = FeatureLayout(
    feature_service="churn_model_v1",
    views={"profile": ["age", "premium"], "activity": ["events_7d", "categorical_event_vector"]},
)
T_ONLINE = datetime(2025, 7, 7, tzinfo=UTC)
T_OFFLINE = datetime(2025, 6, 30, tzinfo=UTC)
PROFILE_ONLINE = (T_ONLINE, {"age": 30, "premium": True})
ACTIVITY_ONLINE = (T_ONLINE, {"events_7d": 4, "categorical_event_vector": [0.5, 0.5]})
PROFILE_OFFLINE = (T_OFFLINE, {"age": 30, "premium": False})
ACTIVITY_OFFLINE = (T_OFFLINE, {"events_7d": 1, "categorical_event_vector": [1.0, 0.0]})


def test_all_views_online_gives_an_online_vector() -> None:
    vector = merge_feature_vector(7, LAYOUT, {"profile": PROFILE_ONLINE, "activity": ACTIVITY_ONLINE}, {})
    assert vector is not None
    assert vector.source == "online" and vector.fallback_reason is None
    assert vector.values == {
        "age": 30,
        "premium": True,
        "events_7d": 4,
        "categorical_event_vector": [0.5, 0.5],
    }
    assert list(vector.values) == LAYOUT.names
    assert vector.views["activity"].event_timestamp == T_ONLINE


def test_a_view_missing_online_is_filled_from_the_offline_store() -> None:
    vector = merge_feature_vector(
        7, LAYOUT, {"profile": PROFILE_ONLINE, "activity": None}, {"activity": ACTIVITY_OFFLINE}
    )
    assert vector is not None
    assert vector.source == "offline" and vector.fallback_reason == "not_in_online_store"
    assert vector.values["premium"] is True  # the online profile is kept
    assert vector.values["events_7d"] == 1
    assert vector.views["profile"].source == "online" and vector.views["activity"].source == "offline"


def test_redis_down_answers_everything_from_the_offline_store_and_says_why() -> None:
    vector = merge_feature_vector(
        7,
        LAYOUT,
        None,
        {"profile": PROFILE_OFFLINE, "activity": ACTIVITY_OFFLINE},
        "online_store_unreachable",
    )
    assert vector is not None
    assert vector.source == "offline" and vector.fallback_reason == "online_store_unreachable"
    assert vector.values == {
        "age": 30,
        "premium": False,
        "events_7d": 1,
        "categorical_event_vector": [1.0, 0.0],
    }


def test_a_user_in_neither_store_is_unknown() -> None:
    assert merge_feature_vector(7, LAYOUT, {"profile": None, "activity": None}, {}) is None
    assert merge_feature_vector(7, LAYOUT, None, {"profile": None}, "online_store_unreachable") is None


def test_a_view_in_neither_store_leaves_its_features_null() -> None:
    vector = merge_feature_vector(7, LAYOUT, None, {"profile": PROFILE_OFFLINE}, "online_store_unreachable")
    assert vector is not None
    assert vector.values["events_7d"] is None and vector.values["categorical_event_vector"] is None
    assert vector.views["activity"].source is None


def test_rows_from_online_columns_splits_feasts_columns_per_user_and_view() -> None:
    seconds = int(T_ONLINE.timestamp())
    columns = {
        "user_id": [1, 2],
        "age": [30, None],
        "age__ts": [seconds, 0],
        "premium": [False, None],
        "premium__ts": [seconds, 0],
        "events_7d": [None, 2],
        "events_7d__ts": [0, seconds],
        "categorical_event_vector": [None, [0.0, 1.0]],
        "categorical_event_vector__ts": [0, seconds],
    }
    rows = rows_from_online_columns(columns, LAYOUT, 2)
    assert rows[0] == {"profile": (T_ONLINE, {"age": 30, "premium": False}), "activity": None}
    assert rows[1] == {
        "profile": None,
        "activity": (T_ONLINE, {"events_7d": 2, "categorical_event_vector": [0.0, 1.0]}),
    }


def test_parse_redis_connection_string_follows_feasts_convention() -> None:
    assert parse_redis_connection_string("127.0.0.1:6380,db=13") == {
        "host": "127.0.0.1",
        "port": 6380,
        "db": 13,
    }
    assert parse_redis_connection_string("redis:6379,password=s3cret,ssl=true") == {
        "host": "redis",
        "port": 6379,
        "password": "s3cret",
        "ssl": True,
    }
    assert parse_redis_connection_string("cache") == {"host": "cache", "port": 6379}
