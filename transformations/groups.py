"""The feature groups by name: which raw table feeds each, which offline-store files it writes,
and the two steps every caller runs on a set of whole users: validate their raw rows, then run
the group's pure function.

The batch job (on any engine, ``transformations.engines``) and the single-user refresh call
these, so a feature has one implementation however many users, machines or partitions compute
it: the DuckDB engine passes all users at once, the Spark engine one bucket of users at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnfs.errors import InvalidInputError, MissingDataError
from churnfs.settings import Settings
from churnfs.store.parts import STREAM_PARTS_DIR, source_files
from churnfs.world import WorldSpec
from transformations.activity import build_activity_features
from transformations.labels import build_churn_labels
from transformations.profile import UTC_US, build_profile_features
from transformations.validation import (
    RAW_SCHEMAS,
    Split,
    check_schema,
    conform,
    connect,
    quarantine_events,
    quarantine_reviews,
    quarantine_targets,
    quarantine_users,
)

GROUPS: tuple[str, ...] = ("profile", "activity", "review", "labels")
GROUP_VIEWS: dict[str, tuple[str, ...]] = {
    "profile": ("user_profile_features",),
    "activity": ("user_activity_features",),
    "review": ("user_review_features", "user_review_embeddings"),
    "labels": ("churn_labels",),
}
"""Group name -> the offline store files it writes (stems, also the Feast feature view names)."""
GROUP_INPUT: dict[str, str | None] = {
    "profile": None,
    "activity": "event_logs",
    "review": "review_table",
    "labels": "target_table",
}
"""Group name -> the raw table it reads besides ``user_table`` (every group reads the users)."""
RUN_ORDER: tuple[str, ...] = ("profile", "activity", "labels", "review")
"""The order the batch job runs groups in: the slow NLP group last."""
STEP_NAMES: dict[str, str] = {
    "user_table": "users: read and validate",
    "event_logs": "events: read, validate, parse",
    "target_table": "targets: read and validate",
    "review_table": "reviews: read and validate",
    "profile": "profile features",
    "activity": "activity features",
    "labels": "churn labels",
    "review": "review features",
}
"""The progress bar's name of each step, whichever engine runs it."""


def select_groups(groups: Sequence[str] | None, allowed: Sequence[str] = GROUPS) -> list[str]:
    """The requested groups in canonical order; an unknown name is the user's error."""
    if groups is None:
        return list(allowed)
    unknown = sorted(set(groups) - set(allowed))
    if unknown:
        raise InvalidInputError(
            f"unknown feature group(s) {', '.join(unknown)}; choose from {', '.join(allowed)}"
        )
    return [g for g in allowed if g in groups]


def raw_table_path(settings: Settings, table: str) -> Path:
    return settings.raw_dir / f"{table}.parquet"


def raw_table_files(settings: Settings, table: str) -> list[Path]:
    """Every parquet file holding a raw table's rows: the generated file, then the parts the stream
    consumer appended beside it (``raw/stream/<table>/``, ``churnfs.stream``), oldest first.

    Raises:
        MissingDataError: the generated file is missing (parts alone are not a world).
    """
    path = raw_table_path(settings, table)
    if not path.exists():
        raise MissingDataError(f"raw table {table} not found at {path}: run `make data` first")
    return source_files(path, STREAM_PARTS_DIR)


def checked_raw_files(settings: Settings, table: str) -> list[Path]:
    """``raw_table_files``, each checked against the raw schema (one line naming the table and
    column otherwise): what a reader of the whole table starts from."""
    files = raw_table_files(settings, table)
    for path in files:
        check_schema(table, pq.read_schema(path))
    return files


def read_raw_table(
    settings: Settings,
    table: str,
    user_id: int | None = None,
    user_ids: Sequence[int] | None = None,
) -> pa.Table:
    """Read one raw table (its contract columns, canonical types) after checking its schema: the
    generated file, then the rows the stream appended (``raw_table_files``), in that order.

    With ``user_id`` (or several ``user_ids``), DuckDB reads only those users' rows (the filter
    is pushed into the parquet scan, so row groups whose statistics exclude them are skipped).
    """
    files = checked_raw_files(settings, table)
    columns = list(RAW_SCHEMAS[table])
    wanted = [int(user_id)] if user_id is not None else None
    if user_ids is not None:
        wanted = [*(wanted or []), *(int(u) for u in user_ids)]
    if wanted is None:
        tables = [conform(table, pq.read_table(path, columns=columns)) for path in files]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    ids = sorted(set(wanted))
    if not ids:
        return conform(table, pq.read_schema(files[0]).empty_table().select(columns))
    # integer literals (cast above): DuckDB prunes row groups by an IN list of constants
    where = f"user_id = {ids[0]}" if len(ids) == 1 else f"user_id IN ({', '.join(map(str, ids))})"
    with connect() as con:
        column_list = ", ".join(f'"{c}"' for c in columns)
        # file order first, then row order within a file: what a plain read gives
        data = con.sql(
            f"""SELECT {column_list} FROM read_parquet(
                $paths, filename = true, file_row_number = true, union_by_name = true)
            WHERE {where}
            ORDER BY list_position($paths, filename), file_row_number""",
            params={"paths": [str(p) for p in files]},
        ).to_arrow_table()
    return conform(table, data)


ROW_POSITION = "__position"
"""A raw row's place in the table: its file's rank in ``raw_table_files`` times ``FILE_RANK``
plus its index in the file. Partitions of users carry it so that their rows keep file order."""
FILE_RANK = 1 << 40


def without_position(table: pa.Table) -> pa.Table:
    """``table`` without its ``ROW_POSITION`` column (if it has one)."""
    return table.drop_columns([ROW_POSITION]) if ROW_POSITION in table.column_names else table


def read_raw_user_range(settings: Settings, table: str, low: int | None, high: int | None) -> pa.Table:
    """The raw rows of ``table`` whose ``user_id`` lies in ``[low, high)`` (an open end with None;
    the range with no upper end also takes the rows without a user), conformed, in file order,
    with their ``ROW_POSITION``. DuckDB streams the scan and skips row groups whose statistics lie
    outside the range, so a partition of users costs its own rows' memory, not the table's."""
    files = checked_raw_files(settings, table)
    columns = list(RAW_SCHEMAS[table])
    bounds = [f"user_id >= {int(low)}"] if low is not None else []
    if high is not None:
        bounds.append(f"user_id < {int(high)}")
    where = " AND ".join(bounds) or "true"
    if high is None:
        where = f"({where}) OR user_id IS NULL"
    column_list = ", ".join(f'"{c}"' for c in columns)
    with connect() as con:
        data = con.sql(
            f"""SELECT {column_list},
                (list_position($paths, filename) - 1) * {FILE_RANK} + file_row_number AS {ROW_POSITION}
            FROM read_parquet($paths, filename = true, file_row_number = true, union_by_name = true)
            WHERE {where}
            ORDER BY {ROW_POSITION}""",
            params={"paths": [str(p) for p in files]},
        ).to_arrow_table()
    return conform(table, data).append_column(ROW_POSITION, data.column(ROW_POSITION).cast(pa.int64()))


def validate(table: str, rows: pa.Table, users: pa.Table | None, spec: WorldSpec) -> Split:
    """Split raw rows of ``table`` into usable rows and quarantined ones (``transformations.validation``).

    Args:
        table: the raw table's name.
        rows: its rows in file order, conformed (``read_raw_table`` or ``conform``); extra columns
            (a partition's row positions) stay on the quarantined rows.
        users: the clean users of the same set of users (unused for ``user_table`` itself).
        spec: the world, whose window bounds event and review times.
    """
    if table == "user_table":
        return quarantine_users(rows)
    if users is None:
        raise ValueError(f"validating {table} needs the clean users")
    if table == "event_logs":
        return quarantine_events(rows, users, spec.start, spec.end)
    if table == "review_table":
        return quarantine_reviews(rows, users, spec.start, spec.end)
    if table == "target_table":
        return quarantine_targets(rows, users)
    raise ValueError(f"no raw table {table!r}")


def group_views(
    group: str,
    users: pa.Table,
    rows: pa.Table | None,
    as_of_times: Sequence[datetime],
    settings: Settings,
    show_progress: bool = False,
    fit_topics: bool | None = None,
    compact_cache: bool = True,
) -> dict[str, pa.Table]:
    """Run one group's pure function on clean rows of a set of whole users.

    Args:
        group: ``profile``, ``activity``, ``review`` or ``labels``.
        users: their clean ``user_table`` rows.
        rows: their clean rows of ``GROUP_INPUT[group]`` (None for ``profile``).
        as_of_times: the snapshot calendar.
        settings: the NLP settings and artifacts of the review group.
        show_progress: a progress bar while embedding reviews.
        fit_topics: may the review group fit a missing topic model (see ``build_review_features``)?
        compact_cache: may the review group merge the embedding cache's parts (not while other
            processes write to it)?

    Returns:
        Feature view name -> its rows (without ``created_timestamp``), for ``GROUP_VIEWS[group]``.
    """
    if group == "profile":
        return {"user_profile_features": build_profile_features(users, as_of_times)}
    if rows is None:
        raise ValueError(f"the {group} group needs its {GROUP_INPUT[group]} rows")
    if group == "activity":
        return {"user_activity_features": build_activity_features(rows, users, as_of_times)}
    if group == "labels":
        return {"churn_labels": build_churn_labels(rows)}
    if group == "review":
        return review_group_features(
            rows, users, as_of_times, settings, show_progress, fit_topics, compact_cache
        )
    raise ValueError(f"no feature group {group!r}")


def topic_fit_sample(reviews: pa.Table, settings: Settings, train_end: datetime) -> pa.Table:
    """Embed a partition's clean reviews (through the cache) and return those written before
    ``train_end``: ``user_id``, ``review_timestamp``, ``review_id``, ``review_text`` and
    ``embedding``; what a
    partitioned engine gathers to fit the topic model (``fit_topics_on_sample``)."""
    from transformations.embeddings import load_encoder, matrix_to_list_array, review_vectors

    reviews = without_position(reviews)
    vectors = review_vectors(
        reviews.to_pandas(), settings, load_encoder(settings), show_progress=False, compact=False
    )
    times = pc.cast(reviews.column("review_timestamp"), pa.int64()).to_numpy()
    before = times < int(train_end.timestamp() * 1_000_000)
    columns = ["user_id", "review_timestamp", "review_id", "review_text"]
    sample = reviews.select(columns).filter(pa.array(before))
    return sample.append_column("embedding", matrix_to_list_array(vectors.embeddings[before]))


def fit_topics_on_sample(parts: Sequence[pa.Table], settings: Settings, train_end: datetime) -> None:
    """Fit the topic model on the partitions' ``topic_fit_sample`` tables, ordered by (user,
    time, review id) as the one-partition review group orders them, so every engine and every
    partitioning fits the same model."""
    from transformations.embeddings import effective_backend, list_column_to_matrix, resolve_device
    from transformations.topics import fit_topic_model

    if not parts:
        raise MissingDataError("no reviews to fit the topic model on: run `make data` first")
    sample = pa.concat_tables(parts).sort_by(
        [("user_id", "ascending"), ("review_timestamp", "ascending"), ("review_id", "ascending")]
    )
    column = sample.column("embedding")
    embeddings = list_column_to_matrix(column, len(column[0]) if len(column) else 0)
    backend = effective_backend(settings.embedding_backend, resolve_device(settings.embedding_device))
    texts = ["" if text is None else str(text) for text in sample.column("review_text").to_pylist()]
    fit_topic_model(settings, embeddings, texts, settings.embedding_model, backend, train_end)


def users_frame(users: pa.Table) -> pd.DataFrame:
    """``user_id`` and ``signup_date`` as pandas (the review group's input)."""
    return users.select(["user_id", "signup_date"]).to_pandas()


def review_group_features(
    reviews: pa.Table,
    users: pa.Table,
    as_of_times: Sequence[datetime],
    settings: Settings,
    show_progress: bool,
    fit_topics: bool | None = None,
    compact_cache: bool = True,
) -> dict[str, pa.Table]:
    """Run the NLP group (``transformations.reviews``) on clean reviews: the snapshot table and
    the event-sourced embedding table, as Arrow, keyed by feature view name."""
    from transformations.reviews import build_review_features  # loads the model: only when needed

    tables = build_review_features(
        reviews.to_pandas(),
        users_frame(users),
        as_of_times,
        settings,
        show_progress=show_progress,
        fit_topics=fit_topics,
        compact_cache=compact_cache,
    )
    views = GROUP_VIEWS["review"]
    return {views[0]: _arrow(tables.snapshots), views[1]: _arrow(tables.embeddings)}


def _arrow(frame: pd.DataFrame) -> pa.Table:
    # drop pandas' schema metadata: its ArrowDtype names make list columns unreadable by to_pandas
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    return table.set_column(
        table.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        table.column("event_timestamp").cast(UTC_US),
    )
