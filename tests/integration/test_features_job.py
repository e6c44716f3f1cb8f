"""The feature job end to end on files: a hand-made raw world (every value known), then the
generated small world (shapes, quarantine, refresh equals batch)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnfs.errors import InvalidInputError, MissingDataError, SchemaError
from churnfs.settings import Settings
from churnfs.world import load_world_spec
from tests.fixtures.transformations import DIRTY_EVENTS, write_hand_made_world
from transformations.job import build_features
from transformations.refresh import recompute_user

pytestmark = pytest.mark.integration

T1 = datetime(2025, 2, 3, tzinfo=UTC)
T2 = datetime(2025, 3, 3, tzinfo=UTC)
END = datetime(2025, 7, 7, tzinfo=UTC)
GROUPS = ["profile", "activity", "labels"]
FILES = ["user_profile_features", "user_activity_features", "churn_labels"]


@pytest.fixture(scope="module")
def hand_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, object], datetime]:
    settings = write_hand_made_world(tmp_path_factory.mktemp("job"))
    started = datetime.now(UTC)
    summary = build_features(settings, groups=GROUPS, show_progress=False)
    return settings, summary, started


def read(settings: Settings, name: str) -> pd.DataFrame:
    """A group's rows in (user_id, event_timestamp) order (the file is in as-of time order)."""
    frame = pd.read_parquet(settings.offline_store_dir / f"{name}.parquet")
    return frame.sort_values(["user_id", "event_timestamp"], ignore_index=True)


def test_group_files_are_in_as_of_order_one_row_group_per_as_of_time(hand_world):
    settings, summary, _ = hand_world
    meta = pq.ParquetFile(settings.offline_store_dir / "user_activity_features.parquet").metadata
    frame = pd.read_parquet(settings.offline_store_dir / "user_activity_features.parquet")
    keys = list(zip(frame["event_timestamp"], frame["user_id"], strict=True))
    assert keys == sorted(keys)
    assert meta.num_row_groups == frame["event_timestamp"].nunique() == summary["as-of times"]


def test_job_writes_one_row_per_user_and_as_of_time(hand_world):
    settings, summary, _ = hand_world
    # 26 weekly as-of times (days 7..182); users 1..5 signed up before 26, 24, 24, 22 and 17 of them
    for name in FILES[:2]:
        frame = read(settings, name)
        assert len(frame) == 113
        assert summary[f"rows {name}"] == 113
        assert not frame.duplicated(["user_id", "event_timestamp"]).any()
    assert summary["as-of times"] == 26


def test_all_rows_share_one_created_timestamp_from_the_job_start(hand_world):
    settings, _, started = hand_world
    stamps = pd.concat([read(settings, name)["created_timestamp"] for name in FILES])
    assert stamps.nunique() == 1
    assert started <= stamps.iloc[0].to_pydatetime() <= datetime.now(UTC)
    assert str(stamps.dtype) == "datetime64[us, UTC]"


def test_stored_activity_values_ignore_quarantined_rows(hand_world):
    settings, _, _ = hand_world
    frame = read(settings, "user_activity_features").set_index(["user_id", "event_timestamp"])
    # user 1 also has dirty rows on 2025-02-01; only the hand-counted clean events count
    assert frame.loc[(1, T1), "total_events"] == 4
    assert frame.loc[(1, T2), "events_30d"] == 4
    assert frame.loc[(1, T2), "avg_session_length"] == pytest.approx((610 + 1840 + 100) / 3)
    # metadata with leading whitespace is still a JSON object
    assert frame.loc[(4, END), "total_events"] == 1
    assert frame.loc[(4, END), "mobile_share_30d"] == 1.0
    assert list(frame.loc[(2, T1), "categorical_event_vector"]) == [0.5, 0, 0, 0, 0.5, 0]


def test_unusable_rows_go_to_quarantine_with_a_reason(hand_world):
    settings, summary, _ = hand_world
    events = pd.read_parquet(settings.quarantine_dir / "event_logs.parquet")
    assert dict(zip(events["event_id"], events["reason"], strict=True)) == {
        event_id: reason for event_id, (_, reason) in DIRTY_EVENTS.items()
    }
    assert summary["quarantined event_logs"] == len(DIRTY_EVENTS)
    assert summary["quarantined event_logs / unparseable_metadata"] == 3
    targets = pd.read_parquet(settings.quarantine_dir / "target_table.parquet")
    assert targets[["user_id", "reason"]].values.tolist() == [[99, "unknown_user_id"]]
    assert summary["quarantined user_table"] == 0


def test_churn_labels_are_the_clean_targets(hand_world):
    settings, _, _ = hand_world
    labels = read(settings, "churn_labels")
    assert list(labels.columns) == ["user_id", "event_timestamp", "created_timestamp", "churned"]
    assert labels[["user_id", "churned"]].values.tolist() == [
        [1, 0],
        [1, 0],
        [2, 0],
        [2, 1],
        [3, 1],
        [3, 1],
        [4, 0],
    ]


def test_rerun_replaces_outputs_with_identical_values(hand_world, tmp_path):
    settings, _, _ = hand_world
    first = {name: read(settings, name).drop(columns="created_timestamp") for name in FILES}
    build_features(settings, groups=GROUPS, show_progress=False)
    for name in FILES:
        again = read(settings, name).drop(columns="created_timestamp")
        pd.testing.assert_frame_equal(
            again.astype({"categorical_event_vector": str}) if "categorical_event_vector" in again else again,
            first[name].astype({"categorical_event_vector": str})
            if "categorical_event_vector" in again
            else first[name],
            check_exact=True,
        )
    leftovers = [p.name for p in settings.offline_store_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_missing_raw_world_says_to_run_make_data(tmp_path: Path):
    with pytest.raises(MissingDataError, match="make data"):
        build_features(Settings(data_dir=tmp_path), show_progress=False)


def test_missing_raw_table_says_to_run_make_data(tmp_path: Path):
    settings = write_hand_made_world(tmp_path)
    (settings.raw_dir / "event_logs.parquet").unlink()
    with pytest.raises(MissingDataError, match=r"event_logs.*make data"):
        build_features(settings, groups=["activity"], show_progress=False)


def test_wrong_column_type_stops_the_job_with_one_line(tmp_path: Path):
    settings = write_hand_made_world(tmp_path)
    path = settings.raw_dir / "event_logs.parquet"
    table = pq.read_table(path)
    table = table.set_column(
        table.schema.get_field_index("session_id"), "session_id", table.column("session_id").cast(pa.string())
    )
    pq.write_table(table, path)
    with pytest.raises(SchemaError) as err:
        build_features(settings, groups=["activity"], show_progress=False)
    assert "event_logs" in str(err.value) and "'session_id'" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (settings.offline_store_dir / "user_activity_features.parquet").exists()


def test_unknown_group_is_refused(tmp_path: Path):
    settings = write_hand_made_world(tmp_path)
    with pytest.raises(InvalidInputError, match="unknown feature group"):
        build_features(settings, groups=["profile", "weather"], show_progress=False)


# --- the generated small world ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_store(
    small_world: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, dict[str, object]]:
    """The small world's raw tables (linked, not copied) with this module's own offline store."""
    data_dir = tmp_path_factory.mktemp("small-store")
    os.symlink(small_world.raw_dir, data_dir / "raw")
    settings = Settings(data_dir=data_dir)
    return settings, build_features(settings, groups=GROUPS, show_progress=False)


def test_small_world_rows_cover_every_signed_up_user_at_every_as_of_time(small_store):
    settings, summary = small_store
    spec = load_world_spec(settings.raw_dir)
    users = pd.read_parquet(settings.raw_dir / "user_table.parquet")
    expected = sum(
        int((users["signup_date"] < t).sum()) for t in spec.as_of_calendar(settings.snapshot_frequency_days)
    )
    activity = read(settings, "user_activity_features")
    assert len(activity) == expected == summary["rows user_profile_features"]
    assert activity[["total_events", "session_count", "events_30d"]].ge(0).all().all()
    assert activity["activity_trend"].between(-1, 1, inclusive="neither").all()
    assert activity["last_active_days"].ge(0).all()
    assert not activity.drop(columns="categorical_event_vector").isna().any().any()


def test_small_world_dirty_rows_are_quarantined_and_counted(small_store):
    settings, summary = small_store
    quarantined = pd.read_parquet(settings.quarantine_dir / "event_logs.parquet")
    assert len(quarantined) == summary["quarantined event_logs"] > 0
    assert set(quarantined["reason"]) <= {
        "null_user_id",
        "unknown_user_id",
        "null_session_id",
        "timestamp_outside_window",
        "before_signup",
        "unknown_event_type",
        "unparseable_metadata",
    }


def test_small_world_refresh_equals_batch_rows(small_store):
    settings, _ = small_store
    activity = read(settings, "user_activity_features")
    spec = load_world_spec(settings.raw_dir)
    for as_of in (spec.cutoffs()[0], spec.end):
        rows = activity[activity["event_timestamp"] == as_of].sort_values(["total_events", "user_id"])
        for user_id in (rows["user_id"].iloc[0].item(), rows["user_id"].iloc[-1].item()):  # quietest, busiest
            fresh = recompute_user(settings, user_id, as_of, groups=("profile", "activity"))
            for view, frame in fresh.items():
                stored = read(settings, view)
                batch = stored[(stored["user_id"] == user_id) & (stored["event_timestamp"] == as_of)]
                left = frame.drop(columns="created_timestamp").astype(str)
                right = batch.drop(columns="created_timestamp").reset_index(drop=True).astype(str)
                pd.testing.assert_frame_equal(left, right)


def test_the_partitioned_engine_writes_the_store_of_the_one_partition_run(
    feature_world: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A world cut into ranges of users (700 of 3,000 users each: five partitions, each read by a
    pushed-down filter, its views spilled and merged per as-of time) writes the offline store and
    the quarantine that all users at once write, and fits the same topic model from its
    per-partition embedding pass. Both build from the same copied embedding cache, with no topic
    model (the session's world may have been rebuilt by other tests). Row groups hold at most 500
    rows here, so the merge re-cuts the partitions' row groups of one as-of time (700 users each)
    into the layout of the one write."""
    import transformations.job

    monkeypatch.setattr(transformations.job, "OFFLINE_ROW_GROUP", 500)
    import numpy as np

    from tests.fixtures.parity import VECTOR_TOLERANCE, assert_same_offline_store, copy_world
    from transformations.engines.duckdb import DuckDBEngine, user_ranges

    whole = copy_world(feature_world, tmp_path / "whole", ("embeddings", "onnx"), partition_users=10**6)
    world = copy_world(feature_world, tmp_path / "parts", ("embeddings", "onnx"), partition_users=700)
    assert len(user_ranges(pq.read_table(world.raw_dir / "user_table.parquet").column("user_id"), 700)) == 5
    assert DuckDBEngine(world).partitioned() and not DuckDBEngine(whole).partitioned()
    build_features(whole, show_progress=False)
    summary = build_features(world, show_progress=False)
    assert_same_offline_store(whole, world)
    for view in ("user_activity_features", "user_review_features"):
        expected = pq.ParquetFile(whole.offline_store_dir / f"{view}.parquet").metadata
        got = pq.ParquetFile(world.offline_store_dir / f"{view}.parquet").metadata
        sizes = [got.row_group(i).num_rows for i in range(got.num_row_groups)]
        assert sizes == [expected.row_group(i).num_rows for i in range(expected.num_row_groups)]
        assert max(sizes) == 500 and got.num_row_groups > summary["as-of times"]
    assert (
        summary["rows user_activity_features"]
        == pq.read_metadata(whole.offline_store_dir / "user_activity_features.parquet").num_rows
    )
    assert not list(world.offline_store_dir.glob(".*"))  # no run or staged file left
    model = "topic_model/v1/centroids.npy"
    assert np.allclose(
        np.load(whole.artifacts_dir / model),
        np.load(world.artifacts_dir / model),
        rtol=0,
        atol=VECTOR_TOLERANCE,
    )
