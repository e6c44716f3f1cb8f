"""Leakage checks (training/leakage.py) on hand-made snapshots and joined rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnfs.errors import InvalidInputError
from churnfs.io import write_parquet_atomic
from churnfs.world import WorldSpec
from training.leakage import (
    LeakageError,
    assert_features_before_cutoff,
    check_ceiling,
    check_time_split,
    feature_snapshot_times,
    scan_single_features,
)

CUTOFF = datetime(2025, 3, 3, tzinfo=UTC)
BEFORE = CUTOFF - timedelta(days=7)
AFTER = CUTOFF + timedelta(days=7)


def _snapshots(path: Path) -> Path:
    """User 1 as of a week before the cutoff, at the cutoff and a week after; user 2 at the cutoff."""
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "event_timestamp": pd.to_datetime([BEFORE, CUTOFF, AFTER, CUTOFF], utc=True),
            "created_timestamp": pd.to_datetime([AFTER] * 4, utc=True),
            "events_30d": [4, 5, 9, 0],
            "last_active_days": [1.5, 0.25, 2.0, 30.0],
        }
    )
    write_parquet_atomic(frame, path)
    return path


def _joined(rows: list[tuple[int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_timestamp": pd.to_datetime([CUTOFF] * len(rows), utc=True),
            "events_30d": [r[1] for r in rows],
            "last_active_days": [r[2] for r in rows],
        }
    )


def _check(joined: pd.DataFrame, path: Path) -> list:
    times = feature_snapshot_times(
        joined, {"activity": path}, {"activity": ["events_30d", "last_active_days"]}
    )
    return [times, assert_features_before_cutoff(joined, times, ["activity"])]


def test_each_joined_row_is_traced_to_its_snapshot(tmp_path: Path) -> None:
    path = _snapshots(tmp_path / "activity.parquet")
    joined = _joined([(1, 5, 0.25), (2, 0, 30.0), (1, 4, 1.5)])
    times, checks = _check(joined, path)
    assert list(pd.to_datetime(times["activity"], utc=True)) == list(
        pd.to_datetime([CUTOFF, CUTOFF, BEFORE], utc=True)
    )
    assert checks[0].max_age_days == 7.0
    assert checks[0].median_age_days == 0.0


def test_values_of_a_snapshot_after_the_cutoff_are_rejected(tmp_path: Path) -> None:
    path = _snapshots(tmp_path / "activity.parquet")
    leaky = _joined([(2, 0, 30.0), (1, 9, 2.0)])  # user 1 got the values known only a week later
    with pytest.raises(LeakageError, match=r"1 joined rows of activity carry values first known after"):
        _check(leaky, path)


def test_values_that_no_snapshot_holds_are_rejected(tmp_path: Path) -> None:
    path = _snapshots(tmp_path / "activity.parquet")
    with pytest.raises(LeakageError, match="values that no offline snapshot has"):
        _check(_joined([(1, 6, 0.25)]), path)


def test_rows_without_values_count_as_missing_not_leaked(tmp_path: Path) -> None:
    path = _snapshots(tmp_path / "activity.parquet")
    joined = _joined([(1, 5, 0.25), (3, np.nan, np.nan)])
    _, checks = _check(joined, path)
    assert checks[0].rows_without_values == 1


def test_world_calendar_periods_are_separated_by_a_full_label_horizon() -> None:
    world = WorldSpec(users=10, seed=1, drift=False)
    periods = world.periods()
    check_time_split(periods["train"], periods["validation"], periods["test"], world.label_horizon_days)
    horizon = timedelta(days=world.label_horizon_days)
    assert min(periods["validation"]) - max(periods["train"]) >= horizon
    assert min(periods["test"]) - max(periods["validation"]) >= horizon


def test_split_with_a_gap_shorter_than_the_horizon_is_rejected() -> None:
    train = [datetime(2025, 3, 1, tzinfo=UTC)]
    valid = [datetime(2025, 3, 20, tzinfo=UTC)]
    test = [datetime(2025, 6, 1, tzinfo=UTC)]
    with pytest.raises(LeakageError, match="training labels run to 2025-03-31, past the first validation"):
        check_time_split(train, valid, test, 30)


def test_test_period_starting_inside_the_validation_labels_is_rejected() -> None:
    train = [datetime(2025, 2, 1, tzinfo=UTC)]
    valid = [datetime(2025, 3, 10, tzinfo=UTC)]
    test = [datetime(2025, 4, 1, tzinfo=UTC)]  # the validation labels run to 2025-04-09
    with pytest.raises(LeakageError, match="validation labels run to 2025-04-09, past the first test cutoff"):
        check_time_split(train, valid, test, 30)
    check_time_split(train, valid, [datetime(2025, 4, 9, tzinfo=UTC)], 30)  # a gap of exactly 30 days


def test_a_world_without_a_test_period_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no test cutoffs"):
        check_time_split([datetime(2025, 2, 1, tzinfo=UTC)], [datetime(2025, 3, 10, tzinfo=UTC)], [], 30)


def test_single_feature_scan_names_a_column_that_beats_the_oracle() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    honest = rng.normal(size=400) + 0.3 * labels  # weak, real signal
    peeking = labels + rng.normal(scale=0.05, size=400)  # practically the label
    x = np.column_stack([honest, peeking])
    with pytest.raises(LeakageError, match=r"events_next_30d \(ROC-AUC 1\.000\)"):
        scan_single_features(x, labels, ["events_30d", "events_next_30d"], oracle_auc=0.8)
    aucs = scan_single_features(x[:, :1], labels, ["events_30d"], oracle_auc=0.8)
    assert 0.5 < aucs["events_30d"] < 0.8


def test_model_above_the_oracle_ceiling_is_rejected() -> None:
    check_ceiling("lightgbm", model_auc=0.81, oracle_auc=0.80)
    with pytest.raises(LeakageError, match=r"lightgbm reaches validation ROC-AUC 0\.900"):
        check_ceiling("lightgbm", model_auc=0.90, oracle_auc=0.80)
