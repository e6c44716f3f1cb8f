"""Raw input validation: schema errors name table and column on one line; unusable rows are
quarantined with the right reason; metadata is parsed once into typed fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest

from churnfs.errors import SchemaError
from tests.fixtures.transformations import (
    CLEAN_EVENTS,
    DIRTY_EVENTS,
    REVIEW_REASONS,
    REVIEWS,
    TARGETS,
    USERS,
    events_frame,
    ts,
)
from transformations.validation import (
    PARSED_EVENT_COLUMNS,
    check_schema,
    conform,
    count_reasons,
    quarantine_events,
    quarantine_reviews,
    quarantine_targets,
    quarantine_users,
)

START = datetime(2025, 1, 6, tzinfo=UTC)
END = datetime(2025, 7, 7, tzinfo=UTC)


def arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def conformed_events(rows: list[tuple]) -> pa.Table:
    return conform("event_logs", arrow(events_frame(rows)))


@pytest.fixture(scope="module")
def users() -> pa.Table:
    return conform("user_table", arrow(USERS))


def test_missing_column_names_table_and_column_on_one_line():
    with pytest.raises(SchemaError) as err:
        check_schema("event_logs", arrow(events_frame(CLEAN_EVENTS).drop(columns=["session_id"])).schema)
    message = str(err.value)
    assert "event_logs" in message and "'session_id'" in message and "missing" in message
    assert "\n" not in message


def test_wrong_type_names_table_column_and_types():
    frame = events_frame(CLEAN_EVENTS)
    frame["metadata"] = 1
    with pytest.raises(SchemaError) as err:
        check_schema("event_logs", arrow(frame).schema)
    message = str(err.value)
    assert "event_logs" in message and "'metadata'" in message and "int64" in message and "string" in message
    assert "\n" not in message


def test_naive_timestamps_are_a_schema_error():
    frame = USERS.copy()
    frame["signup_date"] = frame["signup_date"].dt.tz_localize(None)
    with pytest.raises(SchemaError, match=r"user_table: column 'signup_date'"):
        check_schema("user_table", arrow(frame).schema)


def test_conform_casts_to_canonical_types_and_keeps_contract_columns():
    frame = USERS.copy()
    frame["age"] = frame["age"].astype("int32")
    frame["income"] = frame["income"].astype("float32")
    frame["extra"] = 1
    table = conform("user_table", arrow(frame))
    assert table.column_names == list(USERS.columns)
    assert table.schema.field("age").type == pa.int64()
    assert table.schema.field("income").type == pa.float64()
    assert table.schema.field("signup_date").type == pa.timestamp("us", tz="UTC")


def test_each_unusable_event_is_quarantined_with_its_reason(users):
    rows = CLEAN_EVENTS + [row for row, _ in DIRTY_EVENTS.values()]
    split = quarantine_events(conformed_events(rows), users, START, END)
    got = dict(
        zip(
            split.quarantined.column("event_id").to_pylist(),
            split.quarantined.column("reason").to_pylist(),
            strict=True,
        )
    )
    assert got == {event_id: reason for event_id, (_, reason) in DIRTY_EVENTS.items()}
    assert sorted(split.clean.column("event_id").to_pylist()) == [row[0] for row in CLEAN_EVENTS]
    # quarantined rows keep their raw columns, in input order
    assert split.quarantined.column_names == [*events_frame(CLEAN_EVENTS).columns, "reason"]
    assert split.quarantined.column("metadata")[6].as_py() == '{"category": "books", "dev'


def test_events_of_a_partition_without_users_are_all_quarantined(users):
    # a Spark bucket may hold events (of unknown or null users) and no user at all
    rows = CLEAN_EVENTS + [row for row, _ in DIRTY_EVENTS.values()]
    split = quarantine_events(conformed_events(rows), users.slice(0, 0), START, END)
    assert split.clean.num_rows == 0
    reasons = split.quarantined.column("reason").to_pylist()
    assert len(reasons) == len(rows)
    null_ids = sum(row[1] is None for row in rows)
    assert reasons.count("null_user_id") == null_ids
    assert reasons.count("unknown_user_id") == len(rows) - null_ids


def test_count_reasons_counts_per_reason(users):
    rows = CLEAN_EVENTS + [row for row, _ in DIRTY_EVENTS.values()]
    split = quarantine_events(conformed_events(rows), users, START, END)
    assert count_reasons(split.quarantined) == {
        "before_signup": 1,
        "null_user_id": 1,
        "timestamp_outside_window": 2,
        "unknown_event_type": 1,
        "unknown_user_id": 1,
        "unparseable_metadata": 3,
    }


def test_metadata_is_parsed_into_typed_fields(users):
    rows = [
        (
            1,
            1,
            10,
            ts("2025-01-10 10:05"),
            "add_to_cart",
            '{"category": "books", "device": "ios", "duration": 20, "price": 15.5}',
        ),
        (
            2,
            1,
            10,
            ts("2025-01-10 10:06"),
            "page_view",
            '  {"device": "web", "duration": "12.5", "extra": [1]}',
        ),
        (3, 1, 10, ts("2025-01-10 10:07"), "page_view", "{}"),
    ]
    split = quarantine_events(conformed_events(rows), users, START, END)
    assert split.quarantined.num_rows == 0
    assert split.clean.column_names == list(PARSED_EVENT_COLUMNS)
    parsed = {r["event_id"]: r for r in split.clean.to_pylist()}
    assert (parsed[1]["category"], parsed[1]["device"], parsed[1]["duration"], parsed[1]["price"]) == (
        "books",
        "ios",
        20.0,
        15.5,
    )
    assert (parsed[2]["category"], parsed[2]["device"], parsed[2]["duration"], parsed[2]["price"]) == (
        None,
        "web",
        12.5,
        None,
    )
    assert (parsed[3]["category"], parsed[3]["device"], parsed[3]["duration"], parsed[3]["price"]) == (
        None,
        None,
        None,
        None,
    )
    assert split.clean.schema.field("duration").type == pa.float64()


def test_users_without_id_or_signup_and_repeated_ids_are_quarantined():
    frame = pd.concat([USERS, USERS.iloc[[1]]], ignore_index=True)
    frame["user_id"] = frame["user_id"].astype("Int64")
    frame.loc[0, "user_id"] = pd.NA
    frame.loc[2, "signup_date"] = pd.NaT
    split = quarantine_users(conform("user_table", arrow(frame)))
    assert split.quarantined.column("reason").to_pylist() == [
        "null_user_id",
        "null_signup_date",
        "duplicate_user_id",
    ]
    assert split.clean.column("user_id").to_pylist() == [2, 4, 5]


def test_reviews_with_bad_fields_are_quarantined(users):
    frame = REVIEWS.copy()
    frame["user_id"] = frame["user_id"].astype("Int64")
    extra = pd.DataFrame(
        [
            (7, 3, 506, ts("2025-01-24"), 4, "Before the writer signed up.", 0, 0),
            (8, 77, 507, ts("2025-02-24"), 4, "Unknown writer.", 0, 0),
            (9, 1, 508, ts("2025-07-07"), 4, "At the window's end.", 0, 0),
        ],
        columns=REVIEWS.columns,
    )
    frame = pd.concat([frame, extra], ignore_index=True)
    split = quarantine_reviews(conform("review_table", arrow(frame)), users, START, END)
    got = dict(
        zip(
            split.quarantined.column("review_id").to_pylist(),
            split.quarantined.column("reason").to_pylist(),
            strict=True,
        )
    )
    assert got == {**REVIEW_REASONS, 7: "before_signup", 8: "unknown_user_id", 9: "timestamp_outside_window"}
    assert split.clean.column("review_id").to_pylist() == [1, 2]


def test_targets_of_unknown_users_or_bad_labels_are_quarantined(users):
    frame = pd.concat(
        [TARGETS, pd.DataFrame({"user_id": [1], "event_timestamp": [ts("2025-03-03")], "churned": [2]})]
    )
    split = quarantine_targets(conform("target_table", arrow(frame)), users)
    assert split.quarantined.column("reason").to_pylist() == ["unknown_user_id", "bad_label"]
    assert split.clean.num_rows == len(TARGETS) - 1
