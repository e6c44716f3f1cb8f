"""Feature values as JSON carries them, and the equality a refresh report uses."""

from __future__ import annotations

import math

import numpy as np

from serving.values import changed_features, plain_features, to_plain, values_equal


def test_to_plain_turns_numpy_values_into_python_and_nan_into_none() -> None:
    assert to_plain(np.int64(7)) == 7 and type(to_plain(np.int64(7))) is int
    assert to_plain(np.float32(0.5)) == 0.5 and type(to_plain(np.float32(0.5))) is float
    assert to_plain(np.bool_(True)) is True
    assert to_plain(float("nan")) is None
    assert to_plain(np.float64(math.inf)) is None
    assert to_plain(np.array([0.25, np.nan], dtype=np.float32)) == [0.25, None]


def test_plain_features_keeps_names_and_order() -> None:
    out = plain_features({"b": np.int64(2), "a": [np.float32(1.5)], "c": "web"})
    assert list(out) == ["b", "a", "c"]
    assert out == {"b": 2, "a": [1.5], "c": "web"}


def test_values_equal_tolerates_float32_round_trips_but_not_real_changes() -> None:
    assert values_equal(0.1, float(np.float32(0.1)))
    assert not values_equal(0.1, 0.1001)
    assert values_equal([1.0, 2.0], [1.0, 2.0 + 1e-9])
    assert not values_equal([1.0, 2.0], [1.0])
    assert not values_equal(None, 0.0)
    assert values_equal(None, None)
    assert not values_equal(True, 1.0)  # a bool never equals a number
    assert values_equal("ios", "ios") and not values_equal("ios", "web")


def test_changed_features_lists_only_the_features_that_moved() -> None:
    before = {"events_7d": 4, "last_active_days": 2.5, "has_reviews": True, "topic_vector": [0.5, 0.5]}
    after = {"events_7d": 0, "last_active_days": 2.5, "has_reviews": True, "topic_vector": [0.25, 0.75]}
    assert changed_features(before, after) == [
        ("events_7d", 4, 0),
        ("topic_vector", [0.5, 0.5], [0.25, 0.75]),
    ]


def test_changed_features_counts_a_feature_missing_before_as_changed() -> None:
    assert changed_features({}, {"total_events": 3}) == [("total_events", None, 3)]
