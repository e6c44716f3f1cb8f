"""The two windows a monitoring run compares, and reading them from the offline store.

A window is a span of as-of times (for feature snapshots and labels) and a span of review times
(for the review text). ``resolve_window`` is pure; the ``load_*`` functions are the I/O edge:
DuckDB reads only the sampled rows, so a 100,000-user store never has to fit in memory whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from churnfs.errors import InvalidInputError, MissingDataError, SchemaError
from churnfs.world import WorldSpec

logger = logging.getLogger(__name__)

PROFILE_FILE = "user_profile_features.parquet"
ACTIVITY_FILE = "user_activity_features.parquet"
REVIEW_FILE = "user_review_features.parquet"
EMBEDDING_FILE = "user_review_embeddings.parquet"
LABEL_FILE = "churn_labels.parquet"
REVIEW_TABLE = "review_table.parquet"
PREDICTION_LOG_GLOB = "predictions-*.jsonl"

KEY_COLUMNS = ("user_id", "event_timestamp")
SERVICE_COLUMNS = ("user_id", "event_timestamp", "created_timestamp")
FEATURE_HORIZON = timedelta(days=30)
"""The look-back of the ``*_30d`` features: 'active' and 'recent' mean within it."""

WINDOW_NAMES = ("training", "latest", "drift")


@dataclass(frozen=True)
class Window:
    """Snapshots with as-of times in ``(after, until]``; reviews written in ``[reviews_from, until)``."""

    name: str
    after: datetime
    until: datetime
    reviews_from: datetime

    def describe(self) -> str:
        if self.after >= self.until - timedelta(microseconds=1):
            return f"{self.name}: the snapshot as of {self.until:%Y-%m-%d}"
        if self.after.microsecond == 999_999:  # an inclusive start stored as "just after"
            first = self.after + timedelta(microseconds=1)
            return f"{self.name}: snapshots as of {first:%Y-%m-%d} to {self.until:%Y-%m-%d}"
        return f"{self.name}: snapshots as of after {self.after:%Y-%m-%d} to {self.until:%Y-%m-%d}"


def _parse_day(text: str, spec: str) -> datetime:
    try:
        day = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInputError(f"window {spec!r}: {text!r} is not an ISO date (YYYY-MM-DD)") from exc
    return day.replace(tzinfo=UTC) if day.tzinfo is None else day.astimezone(UTC)


def resolve_window(spec: str, world: WorldSpec, latest_as_of: datetime, warmup_days: int = 0) -> Window:
    """Turn a window name into times.

    ``training``: as-of times from ``warmup_days`` after the start up to ``train_end``.
    ``latest``: the newest snapshot, with the reviews of the 30 days before it.
    ``drift``: as-of times after ``drift_start``.
    ``YYYY-MM-DD..YYYY-MM-DD``: as-of times after the first day up to the second.
    """
    if spec == "training":
        warm = world.start + timedelta(days=warmup_days)
        if warm >= world.train_end:
            raise InvalidInputError(f"a warm-up of {warmup_days} days leaves no training snapshots")
        return Window(spec, warm - timedelta(microseconds=1), world.train_end, world.start)
    if spec == "latest":
        return Window(
            spec, latest_as_of - timedelta(microseconds=1), latest_as_of, latest_as_of - FEATURE_HORIZON
        )
    if spec == "drift":
        return Window(spec, world.drift_start, world.end, world.drift_start)
    first, sep, last = spec.partition("..")
    if not sep:
        raise InvalidInputError(
            f"unknown window {spec!r}: use one of {', '.join(WINDOW_NAMES)} or YYYY-MM-DD..YYYY-MM-DD"
        )
    after, until = _parse_day(first, spec), _parse_day(last, spec)
    if until <= after:
        raise InvalidInputError(f"window {spec!r} is empty: its end must come after its start")
    return Window(spec, after, until, after)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingDataError(f"{what} not found at {path}: run `make features` first")
    return path


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    return [row[0] for row in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]


def latest_snapshot_time(offline_store_dir: Path) -> datetime:
    """The newest as-of time in the activity group."""
    path = _require(offline_store_dir / ACTIVITY_FILE, "the activity feature group")
    with _connect() as con:
        row = con.execute("SELECT max(event_timestamp) FROM read_parquet(?)", [str(path)]).fetchone()
    if row is None or row[0] is None:
        raise MissingDataError(f"{path} holds no snapshots: run `make features` first")
    value: datetime = row[0]
    return value.astimezone(UTC)


def load_snapshots(
    offline_store_dir: Path,
    window: Window,
    *,
    max_rows: int,
    seed: int,
    active_only: bool,
) -> pd.DataFrame:
    """Snapshot rows of the window: one as-of time per user (drawn by a hash, so every run draws
    the same), at most ``max_rows`` users; the profile, activity and review groups joined on
    user and as-of time, the review embedding as of that time (the latest event-sourced row at or
    before it), plus ``churned`` where that as-of time is a label cutoff.

    One row per user keeps the rows independent: a user seen at ten weekly snapshots would
    otherwise count ten times and make every p-value look more certain than it is.

    Raises:
        MissingDataError: a feature group is missing.
        SchemaError: a group lacks its key columns or ``events_30d`` (needed for ``active_only``).
    """
    paths = {
        "a": _require(offline_store_dir / ACTIVITY_FILE, "the activity feature group"),
        "p": _require(offline_store_dir / PROFILE_FILE, "the profile feature group"),
    }
    if (offline_store_dir / REVIEW_FILE).exists():
        paths["r"] = offline_store_dir / REVIEW_FILE
    else:
        logger.warning("no review feature group at %s: review features are not compared", offline_store_dir)
    label_path = offline_store_dir / LABEL_FILE
    with _connect() as con:
        selects = ["k.user_id", "k.event_timestamp"]
        seen: set[str] = set(SERVICE_COLUMNS)
        for alias, path in paths.items():
            cols = _columns(con, path)
            missing = [c for c in KEY_COLUMNS if c not in cols]
            if missing:
                raise SchemaError(
                    f"{path} lacks column(s) {', '.join(missing)}: rebuild it with `make features`"
                )
            if alias == "a" and active_only and "events_30d" not in cols:
                raise SchemaError(f"{path} lacks column events_30d: rebuild it with `make features`")
            for col in cols:
                if col not in seen:
                    selects.append(f'{alias}."{col}"')
                    seen.add(col)
        joins = [
            f"JOIN read_parquet('{path}') {a} USING (user_id, event_timestamp)" for a, path in paths.items()
        ]
        embedding_path = offline_store_dir / EMBEDDING_FILE
        if "r" in paths and embedding_path.exists():
            # Event-sourced rows: the embedding as of t is the user's latest row at or before t.
            # Only the sampled users' rows go into the as-of join, which sorts both of its sides:
            # the whole file is a 384-float vector per user and review date (1 GB at 1M users).
            selects.append('e."review_embedding"')
            joins.append(
                "ASOF LEFT JOIN (SELECT user_id, event_timestamp, review_embedding "
                f"FROM read_parquet('{embedding_path}') WHERE user_id IN (SELECT user_id FROM k)) e "
                "ON k.user_id = e.user_id AND k.event_timestamp >= e.event_timestamp"
            )
        if label_path.exists() and "churned" in _columns(con, label_path):
            selects.append('l."churned"')
            joins.append(f"LEFT JOIN read_parquet('{label_path}') l USING (user_id, event_timestamp)")
        active = "AND events_30d > 0" if active_only else ""
        sql = f"""
            WITH candidates AS (
                SELECT user_id, event_timestamp,
                       hash(user_id, epoch_us(event_timestamp), $seed::BIGINT) AS draw
                FROM read_parquet('{paths["a"]}')
                WHERE event_timestamp > $after AND event_timestamp <= $until {active}
            ), k AS (
                SELECT user_id, event_timestamp FROM candidates
                QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY draw, event_timestamp) = 1
                ORDER BY hash(user_id, $seed::BIGINT), user_id
                LIMIT $max_rows
            )
            SELECT {", ".join(selects)} FROM k {" ".join(joins)}
            ORDER BY k.event_timestamp, k.user_id
        """
        params = {"after": window.after, "until": window.until, "seed": seed, "max_rows": max_rows}
        frame = con.sql(sql, params=params).to_arrow_table().to_pandas()
    logger.info("window %s: %d snapshot rows", window.name, len(frame))
    return frame


def load_reviews(raw_dir: Path, window: Window, *, max_rows: int, seed: int) -> pd.DataFrame:
    """Reviews written in ``[reviews_from, until)``, at most ``max_rows`` (hash sample)."""
    path = raw_dir / REVIEW_TABLE
    if not path.exists():
        raise MissingDataError(f"no review table at {path}: run `make data` first")
    with _connect() as con:
        cols = _columns(con, path)
        missing = [c for c in ("review_id", "review_timestamp", "review_text") if c not in cols]
        if missing:
            raise SchemaError(f"{path} lacks column(s) {', '.join(missing)}: regenerate it with `make data`")
        frame = (
            con.sql(
                f"""
                SELECT review_id, review_timestamp, review_text FROM read_parquet('{path}')
                WHERE review_timestamp >= ? AND review_timestamp < ?
                ORDER BY hash(review_id, ?::BIGINT), review_id LIMIT ?
                """,
                params=[window.reviews_from, window.until, seed, max_rows],
            )
            .to_arrow_table()
            .to_pandas()
        )
    return frame


def load_prediction_log(prediction_log_dir: Path) -> pd.DataFrame:
    """The prediction log serving wrote (only the keys monitoring needs), the latest
    prediction per user.

    Raises:
        MissingDataError: no log files, or files without a single prediction.
    """
    files = sorted(Path(prediction_log_dir).glob(PREDICTION_LOG_GLOB))
    if not files:
        raise MissingDataError(
            f"no prediction log under {prediction_log_dir} ({PREDICTION_LOG_GLOB}): "
            "serve the model and score users first (`make serve`, then POST /predict)"
        )
    columns = {
        "logged_at": "VARCHAR",
        "user_id": "BIGINT",
        "model_version": "VARCHAR",
        "source": "VARCHAR",
        "churn_probability": "DOUBLE",
    }
    with _connect() as con:
        try:
            frame = (
                con.sql(
                    """
                    SELECT * FROM read_json(?, format = 'newline_delimited', columns = ?)
                    WHERE churn_probability IS NOT NULL AND user_id IS NOT NULL
                    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY logged_at DESC) = 1
                    """,
                    params=[[str(f) for f in files], columns],
                )
                .to_arrow_table()
                .to_pandas()
            )
        except duckdb.Error as exc:
            raise SchemaError(
                f"the prediction log under {prediction_log_dir} is not valid JSON lines in the documented "
                f"format (docs/data-model.md): {str(exc).splitlines()[0]}"
            ) from exc
    if frame.empty:
        raise MissingDataError(f"the prediction log under {prediction_log_dir} holds no predictions yet")
    return frame


def split_by_user(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two random halves of a window, all rows of a user on the same side: the control
    comparison that must not be flagged."""
    users = frame["user_id"].unique()
    rng = np.random.default_rng(seed)
    first = set(rng.choice(users, size=len(users) // 2, replace=False).tolist())
    mask = frame["user_id"].isin(first)
    return frame[mask].reset_index(drop=True), frame[~mask].reset_index(drop=True)


def held_out_window(world: WorldSpec, latest_as_of: datetime) -> Window | None:
    """The snapshot at the world's test cutoff (the period the champion was scored on once, at the
    end of training), or None when the world has none before ``latest_as_of``."""
    test = world.test_cutoffs()
    if not test or test[-1] >= latest_as_of:
        return None
    return Window("test period", test[-1] - timedelta(microseconds=1), test[-1], test[-1] - FEATURE_HORIZON)
