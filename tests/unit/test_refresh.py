"""Recomputing one user runs the batch job's code: its rows equal the batch rows; the refresh clock
never runs past the raw data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from churnfs.errors import InvalidInputError, MissingDataError
from churnfs.settings import Settings
from tests.fixtures.transformations import write_hand_made_world
from transformations.job import build_features
from transformations.refresh import newest_raw_time, recompute_user, refresh_as_of

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


def test_the_world_clock_refreshes_as_of_the_worlds_end(built_world):
    assert refresh_as_of(built_world, now=datetime(2030, 1, 1, tzinfo=UTC)) == END


def test_the_wall_clock_stops_at_the_second_after_the_newest_raw_row(built_world):
    wall = built_world.model_copy(update={"refresh_clock": "wall"})
    # The newest usable raw row is user 4's event at 2025-06-30 08:00 (an event dated 2025-08-01,
    # after the world's end, is quarantined and does not count); newer than any review or signup.
    assert newest_raw_time(wall, END) == datetime(2025, 6, 30, 8, tzinfo=UTC)
    horizon = datetime(2025, 6, 30, 8, 0, 1, tzinfo=UTC)
    assert refresh_as_of(wall, now=datetime(2026, 3, 1, tzinfo=UTC)) == horizon
    # before the data's horizon, the wall clock itself (in whole seconds)
    now = datetime(2025, 6, 1, 12, 30, 15, 999_999, tzinfo=UTC)
    assert refresh_as_of(wall, now=now) == datetime(2025, 6, 1, 12, 30, 15, tzinfo=UTC)


def test_a_row_recomputed_at_the_wall_horizon_counts_the_newest_raw_row(built_world):
    wall = built_world.model_copy(update={"refresh_clock": "wall"})
    as_of = refresh_as_of(wall, now=datetime(2026, 3, 1, tzinfo=UTC))
    frame = recompute_user(wall, 4, as_of, groups=("activity",))["user_activity_features"]
    assert frame.loc[0, "total_events"] == 1  # the 08:00 event, strictly before 08:00:01
    assert frame.loc[0, "last_active_days"] == pytest.approx(1 / 86_400)
