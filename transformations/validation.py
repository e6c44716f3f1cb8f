"""Raw input at the edge: schema checks and quarantine of unusable rows.

Two kinds of bad input are told apart. A table whose *shape* is wrong (a missing column, a
column of the wrong type) stops the job with one line naming the table and column: nothing
sensible can be computed from it. A *row* that cannot be used (a null ``user_id``, metadata
that is not a JSON object, a timestamp outside the window, ...) is split off with a ``reason``
so the job can write it to ``DATA_DIR/quarantine/<table>.parquet`` and go on with the rest.

The quarantine functions are pure (Arrow tables in, Arrow tables out) so the batch job and the
single-user refresh run exactly the same checks.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnfs.errors import SchemaError
from churnfs.world import EVENT_TYPES
from transformations.profile import UTC_US, timestamps_us, user_positions

INT, FLOAT, STRING, TIMESTAMP, BOOL = "integer", "float", "string", "timestamp with time zone", "bool"

RAW_SCHEMAS: dict[str, dict[str, str]] = {
    "user_table": {
        "user_id": INT,
        "signup_date": TIMESTAMP,
        "age": INT,
        "gender": STRING,
        "country": STRING,
        "income": FLOAT,
        "device": STRING,
        "account_age_days": INT,
        "premium": BOOL,
    },
    "event_logs": {
        "event_id": INT,
        "user_id": INT,
        "session_id": INT,
        "event_timestamp": TIMESTAMP,
        "event_type": STRING,
        "metadata": STRING,
    },
    "review_table": {
        "review_id": INT,
        "user_id": INT,
        "product_id": INT,
        "review_timestamp": TIMESTAMP,
        "rating": INT,
        "review_text": STRING,
        "helpful_votes": INT,
        "total_votes": INT,
    },
    "target_table": {"user_id": INT, "event_timestamp": TIMESTAMP, "churned": INT},
}
"""Each raw table's columns and the kind of type each must have (docs/data-model.md)."""

_CANONICAL: dict[str, pa.DataType] = {
    INT: pa.int64(),
    FLOAT: pa.float64(),
    STRING: pa.string(),
    TIMESTAMP: pa.timestamp("us", tz="UTC"),
    BOOL: pa.bool_(),
}

METADATA_SCHEMA = '{"category": "VARCHAR", "device": "VARCHAR", "duration": "DOUBLE", "price": "DOUBLE"}'
"""The metadata fields the features use; a missing field (or one of another JSON type) is null."""

PARSED_EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "session_id",
    "event_timestamp",
    "event_type",
    "category",
    "device",
    "duration",
    "price",
)
"""Columns of clean events after parsing ``metadata`` once."""


class Split(NamedTuple):
    """The usable rows of a raw table, and the others with a ``reason`` column."""

    clean: pa.Table
    quarantined: pa.Table


def _matches(kind: str, dtype: pa.DataType) -> bool:
    if kind == INT:
        return bool(pa.types.is_integer(dtype))
    if kind == FLOAT:
        return bool(pa.types.is_floating(dtype) or pa.types.is_integer(dtype))
    if kind == STRING:
        return bool(
            pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)
        )
    if kind == TIMESTAMP:
        return bool(pa.types.is_timestamp(dtype) and dtype.tz is not None)
    return bool(pa.types.is_boolean(dtype))


def check_schema(table: str, schema: pa.Schema) -> None:
    """Raise ``SchemaError`` (one line naming table and column) unless ``schema`` has every column
    of the raw table ``table`` with a type of the right kind. Extra columns are allowed."""
    expected = RAW_SCHEMAS[table]
    for column, kind in expected.items():
        index = schema.get_field_index(column)
        if index < 0:
            raise SchemaError(
                f"raw table {table}: column {column!r} is missing (expected {kind}); "
                "regenerate the raw world with `make data`"
            )
        dtype = schema.field(index).type
        if not _matches(kind, dtype):
            raise SchemaError(
                f"raw table {table}: column {column!r} has type {dtype}, expected {kind}; "
                "regenerate the raw world with `make data`"
            )


def conform(table: str, data: pa.Table) -> pa.Table:
    """Check ``data`` against the raw table's schema, keep its contract columns in order and cast
    them to the canonical types (int64, float64, string, UTC microsecond timestamps, bool)."""
    check_schema(table, data.schema)
    columns = RAW_SCHEMAS[table]
    arrays = []
    for column, kind in columns.items():
        array = data.column(column)
        target = _CANONICAL[kind]
        if kind == TIMESTAMP:
            array = array.cast(pa.timestamp("us", tz=array.type.tz)).cast(target)
        elif array.type != target:
            array = array.cast(target)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=list(columns))


_database: duckdb.DuckDBPyConnection | None = None
_database_lock = threading.Lock()


def connect() -> duckdb.DuckDBPyConnection:
    """A cursor on a process-wide in-memory DuckDB whose timestamps come back in UTC.

    Opening a DuckDB database costs about 0.1 s, a cursor a few milliseconds: the single-user
    refresh opens several per request. Cursors keep their registered tables to themselves and are
    safe to use from different threads; the database is created on first use, not at import."""
    global _database
    with _database_lock:
        if _database is None:
            database = duckdb.connect()
            database.execute("SET GLOBAL TimeZone = 'UTC'")
            _database = database
        return _database.cursor()


def _split(
    con: duckdb.DuckDBPyConnection,
    source: pa.Table,
    reason_sql: str,
    join_sql: str = "",
    params: Mapping[str, object] | None = None,
) -> Split:
    """Tag every row of ``source`` (registered as ``src``) with the first failing check of
    ``reason_sql`` (NULL when usable). DuckDB returns only the failing rows' numbers and reasons;
    the split itself is an Arrow filter, so clean rows keep their order and are never copied
    through the database."""
    numbered = source.append_column("_row", pa.array(np.arange(source.num_rows, dtype=np.int64)))
    con.register("src", numbered)
    failures = con.sql(
        f"""SELECT _row, reason FROM (SELECT src._row, {reason_sql} AS reason FROM src {join_sql})
        WHERE reason IS NOT NULL ORDER BY _row""",
        params=params,
    ).to_arrow_table()
    con.unregister("src")
    bad_rows = failures.column("_row")
    keep = np.ones(source.num_rows, dtype=bool)
    keep[np.asarray(bad_rows.to_numpy(), dtype=np.int64)] = False
    quarantined = source.take(bad_rows).append_column("reason", failures.column("reason").cast(pa.string()))
    return Split(source.filter(pa.array(keep)), quarantined)


def _quarantine_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([*schema, pa.field("reason", pa.string())])


def quarantine_users(users: pa.Table) -> Split:
    """Split off users without an id or a signup date, and every repeat of a user id but its first
    row. ``users`` is a conformed ``user_table``."""
    with connect() as con:
        reason = """CASE
            WHEN user_id IS NULL THEN 'null_user_id'
            WHEN signup_date IS NULL THEN 'null_signup_date'
            WHEN _row > min(_row) OVER (PARTITION BY user_id) THEN 'duplicate_user_id'
        END"""
        return _split(con, users, reason)


def quarantine_events(events: pa.Table, users: pa.Table, start: datetime, end: datetime) -> Split:
    """Validate ``event_logs`` rows and parse their metadata once.

    Reasons, first match wins: ``null_user_id``, ``unknown_user_id`` (not in ``users``),
    ``null_session_id``, ``timestamp_outside_window`` (null, before ``start`` or at/after ``end``),
    ``before_signup``, ``unknown_event_type`` (not one of ``EVENT_TYPES``), ``unparseable_metadata``
    (null, not JSON, or JSON that is not an object). Clean rows come back with
    ``PARSED_EVENT_COLUMNS``: ``category``, ``device``, ``duration`` and ``price`` read from the JSON.

    Args:
        events: conformed ``event_logs`` rows.
        users: clean users (``user_id``, ``signup_date``).
        start: the window's start; end: its (exclusive) end.
    """
    # The writer's signup date joins in by array lookup, so DuckDB runs a plain projection that
    # keeps the rows' order: one pass checks every row and parses the clean rows' metadata.
    user_ids = np.asarray(users.column("user_id").to_numpy(), dtype=np.int64)
    event_users = np.asarray(pc.fill_null(events.column("user_id"), 0).to_numpy(), dtype=np.int64)
    position = user_positions(user_ids, event_users)
    signup_us = timestamps_us(users.column("signup_date"))
    known = signup_us[np.maximum(position, 0)] if signup_us.size else np.zeros(position.size, np.int64)
    signup = pa.array(np.where(position >= 0, known, 0), mask=position < 0, type=pa.int64()).cast(UTC_US)
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    with connect() as con:
        con.register("src", events.append_column("signup_date", signup))
        checked = con.sql(
            f"""SELECT event_id, reason,
                CASE WHEN reason IS NULL THEN from_json(metadata, '{METADATA_SCHEMA}') END AS m
            FROM (SELECT event_id, metadata, CASE
                WHEN user_id IS NULL THEN 'null_user_id'
                WHEN signup_date IS NULL THEN 'unknown_user_id'
                WHEN session_id IS NULL THEN 'null_session_id'
                WHEN event_timestamp IS NULL OR event_timestamp < $start OR event_timestamp >= $end
                    THEN 'timestamp_outside_window'
                WHEN event_timestamp < signup_date THEN 'before_signup'
                WHEN event_type IS NULL OR event_type NOT IN ({types}) THEN 'unknown_event_type'
                WHEN NOT coalesce(json_valid(metadata), false)
                    OR NOT CASE WHEN starts_with(metadata, '{{') THEN true  -- skip the trim for most rows
                        ELSE starts_with(ltrim(metadata, e' \t\n\r'), '{{') END THEN 'unparseable_metadata'
            END AS reason FROM src)""",
            params={"start": start, "end": end},
        ).to_arrow_table()
    if not checked.column("event_id").equals(events.column("event_id")):  # DuckDB keeps scan order
        raise RuntimeError("event validation changed the order of events")
    reason = checked.column("reason")
    usable = pc.is_null(reason)
    clean = events.drop_columns(["metadata"]).filter(usable)
    parsed = pc.filter(checked.column("m"), usable)
    for field in ("category", "device", "duration", "price"):
        clean = clean.append_column(field, pc.struct_field(parsed, field))
    quarantined = events.filter(pc.invert(usable)).append_column(
        "reason", pc.filter(reason, pc.invert(usable)).cast(pa.string())
    )
    return Split(clean.select(list(PARSED_EVENT_COLUMNS)), quarantined)


def quarantine_reviews(reviews: pa.Table, users: pa.Table, start: datetime, end: datetime) -> Split:
    """Validate ``review_table`` rows. Reasons, first match wins: ``null_user_id``,
    ``unknown_user_id``, ``timestamp_outside_window``, ``before_signup``, ``bad_rating`` (null or
    outside 1..5), ``null_text`` (null or blank ``review_text``), ``bad_votes`` (null, negative, or
    more helpful votes than votes). Clean rows keep the contract's columns."""
    with connect() as con:
        con.register("users", users.select(["user_id", "signup_date"]))
        reason = """CASE
            WHEN src.user_id IS NULL THEN 'null_user_id'
            WHEN u.signup_date IS NULL THEN 'unknown_user_id'
            WHEN review_timestamp IS NULL OR review_timestamp < $start OR review_timestamp >= $end
                THEN 'timestamp_outside_window'
            WHEN review_timestamp < u.signup_date THEN 'before_signup'
            WHEN rating IS NULL OR rating NOT BETWEEN 1 AND 5 THEN 'bad_rating'
            WHEN review_text IS NULL OR trim(review_text) = '' THEN 'null_text'
            WHEN helpful_votes IS NULL OR total_votes IS NULL OR helpful_votes < 0
                OR helpful_votes > total_votes THEN 'bad_votes'
        END"""
        return _split(
            con,
            reviews,
            reason,
            join_sql="LEFT JOIN users u ON src.user_id = u.user_id",
            params={"start": start, "end": end},
        )


def quarantine_targets(targets: pa.Table, users: pa.Table) -> Split:
    """Validate ``target_table`` rows. Reasons: ``null_user_id``, ``unknown_user_id``,
    ``null_cutoff`` (null ``event_timestamp``), ``bad_label`` (``churned`` null or not 0/1)."""
    with connect() as con:
        con.register("users", users.select(["user_id"]))
        reason = """CASE
            WHEN src.user_id IS NULL THEN 'null_user_id'
            WHEN u.user_id IS NULL THEN 'unknown_user_id'
            WHEN event_timestamp IS NULL THEN 'null_cutoff'
            WHEN churned IS NULL OR churned NOT IN (0, 1) THEN 'bad_label'
        END"""
        return _split(con, targets, reason, join_sql="LEFT JOIN users u ON src.user_id = u.user_id")


def count_reasons(quarantined: pa.Table) -> dict[str, int]:
    """Quarantined rows per reason, sorted by reason."""
    if quarantined.num_rows == 0:
        return {}
    counts = pc.value_counts(quarantined.column("reason")).to_pylist()
    return {c["values"]: int(c["counts"]) for c in sorted(counts, key=lambda c: c["values"])}
