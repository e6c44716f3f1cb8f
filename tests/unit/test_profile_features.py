"""Profile features and the snapshot population, on hand-made users."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fixtures.transformations import TARGETS, USERS
from transformations.labels import build_churn_labels
from transformations.profile import build_profile_features

T1 = datetime(2025, 2, 3, tzinfo=UTC)
T2 = datetime(2025, 3, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def rows() -> dict[tuple[int, datetime], dict]:
    table = build_profile_features(USERS, [T2, T1, T1])  # unsorted, repeated: calendar is normalised
    return {(r["user_id"], r["event_timestamp"]): r for r in table.to_pylist()}


def test_one_row_per_user_signed_up_strictly_before_the_as_of_time(rows):
    # user 4 signs up exactly at T1 (no T1 row); user 5 after T2 (no rows)
    assert list(rows) == [(1, T1), (1, T2), (2, T1), (2, T2), (3, T1), (3, T2), (4, T2)]


def test_account_age_is_whole_days_from_signup_to_the_as_of_time(rows):
    assert rows[(1, T1)]["account_age_days"] == 64  # 2024-12-01 -> 2025-02-03
    assert rows[(1, T2)]["account_age_days"] == 92
    assert rows[(2, T1)]["account_age_days"] == 13  # 2025-01-20 18:00 -> 13.25 days
    assert rows[(3, T1)]["account_age_days"] == 9
    assert rows[(4, T2)]["account_age_days"] == 28


def test_attributes_are_copied_from_the_user_table(rows):
    assert rows[(2, T2)] | {"account_age_days": None} == {
        "user_id": 2,
        "event_timestamp": T2,
        "age": 51,
        "gender": "male",
        "country": "US",
        "income": 120_500.5,
        "device": "web",
        "premium": False,
        "account_age_days": None,
    }


def test_profile_dtypes():
    table = build_profile_features(USERS, [T1])
    assert {f.name: str(f.type) for f in table.schema} == {
        "user_id": "int64",
        "event_timestamp": "timestamp[us, tz=UTC]",
        "age": "int64",
        "gender": "string",
        "country": "string",
        "income": "double",
        "device": "string",
        "premium": "bool",
        "account_age_days": "int64",
    }


def test_naive_as_of_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        build_profile_features(USERS, [datetime(2025, 2, 3)])


def test_churn_labels_copy_the_target_table_in_store_shape():
    table = build_churn_labels(TARGETS)
    assert table.column_names == ["user_id", "event_timestamp", "churned"]
    assert str(table.schema.field("churned").type) == "int64"
    assert table.to_pylist()[:3] == [
        {"user_id": 1, "event_timestamp": T1, "churned": 0},
        {"user_id": 1, "event_timestamp": datetime(2025, 2, 17, tzinfo=UTC), "churned": 0},
        {"user_id": 2, "event_timestamp": T1, "churned": 0},
    ]
