"""Recomputing one user runs the batch job's code: its rows equal the batch rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from churnfs.errors import InvalidInputError, MissingDataError
from churnfs.settings import Settings
from tests.fixtures.transformations import write_hand_made_world
from transformations.job import build_features
from transformations.refresh import recompute_user

T1 = datetime(2025, 2, 3, tzinfo=UTC)
T2 = datetime(2025, 3, 3, tzinfo=UTC)
END = datetime(2025, 7, 7, tzinfo=UTC)
VIEWS = ("user_profile_features", "user_activity_features")


@pytest.fixture(scope="module")
def built_world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = write_hand_made_world(tmp_path_factory.mktemp("refresh"))
    build_features(settings, groups=["profile", "activity"], show_progress=False)
    return settings


def batch_rows(settings: Settings, view: str, user_id: int, as_of: datetime) -> pd.DataFrame:
    frame = pd.read_parquet(settings.offline_store_dir / f"{view}.parquet")
    rows = frame[(frame["user_id"] == user_id) & (frame["event_timestamp"] == as_of)]
    return rows.drop(columns="created_timestamp").reset_index(drop=True)


def assert_same_rows(left: pd.DataFrame, right: pd.DataFrame) -> None:
    if "categorical_event_vector" in left:
        left = left.assign(categorical_event_vector=left["categorical_event_vector"].map(list))
        right = right.assign(categorical_event_vector=right["categorical_event_vector"].map(list))
    pd.testing.assert_frame_equal(left, right, check_exact=True)


@pytest.mark.parametrize(
    ("user_id", "as_of"),
    [(user, as_of) for user in (1, 2, 3, 4) for as_of in (T1, T2, END) if (user, as_of) != (4, T1)],
)
def test_recomputed_rows_equal_the_batch_rows(built_world, user_id, as_of):
    fresh = recompute_user(built_world, user_id, as_of, groups=("profile", "activity"))
    assert sorted(fresh) == sorted(VIEWS)
    for view in VIEWS:
        batch = batch_rows(built_world, view, user_id, as_of)
        assert len(batch) == 1
        assert_same_rows(fresh[view].drop(columns="created_timestamp"), batch)


def test_recomputed_rows_carry_the_store_columns_and_a_fresh_created_timestamp(built_world):
    before = datetime.now(UTC)
    fresh = recompute_user(built_world, 1, T2, groups=("activity",))
    frame = fresh["user_activity_features"]
    assert list(frame.columns[:3]) == ["user_id", "event_timestamp", "created_timestamp"]
    assert frame.loc[0, "created_timestamp"] >= pd.Timestamp(before).floor("us")
    assert frame.loc[0, "total_events"] == 7


def test_refresh_of_an_unknown_user_is_a_missing_data_error(built_world):
    with pytest.raises(MissingDataError, match="unknown user_id 404"):
        recompute_user(built_world, 404, T2, groups=("profile",))


def test_refresh_before_signup_or_with_a_naive_time_is_refused(built_world):
    with pytest.raises(InvalidInputError, match="signed up"):
        recompute_user(built_world, 4, T1, groups=("profile",))
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        recompute_user(built_world, 1, datetime(2025, 3, 3), groups=("profile",))
    with pytest.raises(InvalidInputError, match="unknown feature group"):
        recompute_user(built_world, 1, T2, groups=("labels",))


def test_refresh_without_a_raw_world_says_to_generate_one(tmp_path: Path):
    with pytest.raises(MissingDataError, match="make data"):
        recompute_user(Settings(data_dir=tmp_path), 1, T2)
