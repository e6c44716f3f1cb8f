"""A refreshed row is appended in the batch file's exact schema; a refresh never goes back in time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serving.features import FeatureVector, ViewOrigin
from serving.refresh import group_name, offline_row, stale_views

T = datetime(2025, 7, 7, tzinfo=UTC)


def test_offline_row_takes_the_group_files_column_order_and_types(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("events_7d", pa.int64()),
            ("categorical_event_vector", pa.list_(pa.float32())),
        ]
    )
    group_file = tmp_path / "user_activity_features.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=schema), group_file)
    frame = pd.DataFrame(
        {
            "categorical_event_vector": [[0.5, 0.5]],
            "events_7d": [3],
            "user_id": [42],
            "event_timestamp": [pd.Timestamp(T)],
        }
    )
    table = offline_row(frame, group_file)
    assert table.schema == schema
    assert table.schema.metadata is None
    assert table.to_pylist() == [
        {"user_id": 42, "event_timestamp": T, "events_7d": 3, "categorical_event_vector": [0.5, 0.5]}
    ]


def test_offline_row_keeps_the_frames_columns_without_a_group_file(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [1], "events_7d": [2]})
    table = offline_row(frame, tmp_path / "missing.parquet")
    assert table.column_names == ["user_id", "events_7d"]
    assert table.to_pylist() == [{"user_id": 1, "events_7d": 2}]


def test_group_name_is_the_transformation_group_of_a_view() -> None:
    assert group_name("user_activity_features") == "activity"
    assert group_name("user_review_features") == "review"


def test_only_views_served_as_of_a_later_time_are_stale() -> None:
    later = datetime(2025, 7, 8, tzinfo=UTC)
    vector = FeatureVector(
        user_id=1,
        source="online",
        fallback_reason=None,
        values={},
        views={
            "user_profile_features": ViewOrigin("online", T),  # same time: the refresh replaces it
            "user_activity_features": ViewOrigin("online", later),
            "user_review_features": ViewOrigin(None, None),  # no row: nothing to go back from
        },
    )
    views = [
        "user_profile_features",
        "user_activity_features",
        "user_review_features",
        "user_review_embeddings",
    ]
    assert stale_views(vector, views, T) == {"user_activity_features": later}
    assert stale_views(vector, views, later) == {}
