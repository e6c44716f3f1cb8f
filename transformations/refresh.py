"""Recompute one user's feature rows for one as-of time (the serving layer's refresh).

Reads only that user's raw rows (DuckDB pushes the ``user_id`` filter into the parquet scan),
validates them exactly as the batch job does (unusable rows are left out and logged, nothing is
written), and runs the very same pure group functions, so a refreshed row equals the row the
batch job writes for the same user and as-of time. ``refresh_as_of`` is the one clock that says
which time that is (``Settings.refresh_clock``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa

from churnfs.errors import InvalidInputError, MissingDataError
from churnfs.settings import Settings
from churnfs.world import load_world_spec
from transformations.activity import build_activity_features
from transformations.groups import (
    GROUP_VIEWS,
    raw_table_files,
    read_raw_table,
    review_group_features,
    select_groups,
)
from transformations.job import with_created_timestamp
from transformations.profile import build_profile_features
from transformations.validation import (
    Split,
    connect,
    count_reasons,
    quarantine_events,
    quarantine_reviews,
    quarantine_users,
)

logger = logging.getLogger(__name__)

REFRESH_GROUPS: tuple[str, ...] = ("profile", "activity", "review")

RAW_TIME_COLUMNS: dict[str, str] = {
    "event_logs": "event_timestamp",
    "review_table": "review_timestamp",
    "user_table": "signup_date",
}
"""The time of each raw row: how far the raw data reaches is the newest of them."""


def newest_raw_time(settings: Settings, before: datetime) -> datetime | None:
    """The newest event, review or signup time in the raw tables (with the events the stream
    appended), among rows before ``before`` (rows at or after the world's end are quarantined, so
    they never count); None without any."""
    selects: list[str] = []
    params: dict[str, object] = {"before": before}
    for i, (table, column) in enumerate(RAW_TIME_COLUMNS.items()):
        # the generated file and the stream's parts beside it (raises when the file is missing)
        files = raw_table_files(settings, table)
        selects.append(
            f'SELECT max("{column}") AS t FROM read_parquet($paths{i}, union_by_name = true) '
            f'WHERE "{column}" < $before'
        )
        params[f"paths{i}"] = [str(path) for path in files]
    with connect() as con:
        row = con.execute(f"SELECT max(t) FROM ({' UNION ALL '.join(selects)})", params).fetchone()
    newest = row[0] if row else None
    return None if newest is None else newest.astimezone(UTC)


def refresh_as_of(settings: Settings, now: datetime | None = None) -> datetime:
    """The as-of time of a refresh, from ``settings.refresh_clock``, in whole seconds (the online
    store keeps event times to the second, so offline and online agree).

    ``world`` (default): the world's end. A generated world's raw data reaches exactly that far
    (no row is dated at or after it), and the batch job's last snapshot is as of it, so a refresh
    recomputes that snapshot with the raw data as it is now; its later ``created_timestamp`` makes
    it win over the batch row everywhere (Feast's joins, materialization, the offline fallback).

    ``wall``: now, for live data, but never past how far the raw data reaches: the first whole
    second after the newest raw row (so that row, strictly before it, counts), and never past the
    world's end. A user who did nothing since the newest raw row does not look inactive for longer
    than the data can tell.
    """
    spec = load_world_spec(settings.raw_dir)
    if settings.refresh_clock == "world":
        return spec.end
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    newest = newest_raw_time(settings, spec.end)
    if newest is None:
        raise MissingDataError(f"the raw tables under {settings.raw_dir} hold no rows: run `make data` first")
    horizon = newest.replace(microsecond=0) + timedelta(seconds=1)
    return min(now, horizon, spec.end)


def _log_quarantine(table: str, split: Split, user_id: int) -> None:
    reasons = count_reasons(split.quarantined)
    if reasons:
        logger.warning(
            "user %s: %s rows left out of %s: %s", user_id, split.quarantined.num_rows, table, reasons
        )


def recompute_user(
    settings: Settings,
    user_id: int,
    as_of: datetime,
    groups: Sequence[str] = REFRESH_GROUPS,
) -> dict[str, pd.DataFrame]:
    """One user's feature rows as of ``as_of``, keyed by feature view name
    (``user_profile_features``, ``user_activity_features``, ``user_review_features`` and
    ``user_review_embeddings``).

    Each frame has one row with the offline store's columns (``created_timestamp`` is now) and the
    dtypes ``pd.read_parquet`` gives for the offline store's files.

    Raises:
        MissingDataError: the user is not in ``user_table`` (or the raw world is missing).
        InvalidInputError: ``as_of`` is naive, the user signed up at or after it, or a group is unknown.
    """
    selected = select_groups(groups, REFRESH_GROUPS)
    if as_of.tzinfo is None:
        raise InvalidInputError("as_of must be timezone-aware (UTC)")
    as_of = as_of.astimezone(UTC)
    created = datetime.now(UTC)
    spec = load_world_spec(settings.raw_dir)

    users_split = quarantine_users(read_raw_table(settings, "user_table", user_id=user_id))
    users = users_split.clean
    if users.num_rows == 0:
        raise MissingDataError(f"unknown user_id {user_id}: not in the raw user_table")
    signup = users.column("signup_date")[0].as_py()
    if signup >= as_of:
        raise InvalidInputError(
            f"user_id {user_id} signed up at {signup.isoformat()}, not before as_of {as_of.isoformat()}"
        )

    tables: dict[str, pa.Table] = {}
    if "profile" in selected:
        tables[GROUP_VIEWS["profile"][0]] = build_profile_features(users, [as_of])
    if "activity" in selected:
        split = quarantine_events(
            read_raw_table(settings, "event_logs", user_id=user_id), users, spec.start, spec.end
        )
        _log_quarantine("event_logs", split, user_id)
        tables[GROUP_VIEWS["activity"][0]] = build_activity_features(split.clean, users, [as_of])
    if "review" in selected:
        split = quarantine_reviews(
            read_raw_table(settings, "review_table", user_id=user_id), users, spec.start, spec.end
        )
        _log_quarantine("review_table", split, user_id)
        tables.update(review_group_features(split.clean, users, [as_of], settings, show_progress=False))
    return {view: with_created_timestamp(t, created).to_pandas() for view, t in tables.items()}
