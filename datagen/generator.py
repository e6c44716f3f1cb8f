"""Generate the raw world: draw every table, then write them all under ``settings.raw_dir``.

The tables are written into a staging folder beside ``raw/`` and the folder is swapped into
place only once every file is written, so a failed run leaves the previous world (or nothing)
behind, never half a world. The events are never held whole: the days spill them into a folder
inside the staging folder (``EVENT_SPILL_FOLDER``), removed before the swap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from churnfs.errors import InvalidInputError
from churnfs.io import RowGroupCutter
from churnfs.settings import Settings
from churnfs.world import (
    FIRST_CUTOFF_DAY,
    LABEL_HORIZON_DAYS,
    WINDOW_DAYS,
    WORLD_SPEC_FILE,
    WORLD_START,
    WorldSpec,
)
from datagen.events import CATEGORIES, EventSpill, event_table, sample_day_events
from datagen.population import Population, build_labels, day_rng, days_to_us, sample_population
from datagen.reviews import Reviews, review_tables, sample_day_reviews

logger = logging.getLogger(__name__)

MAX_USERS = 1_000_000
MAX_WINDOW_DAYS = 3 * 365
MAX_DIRTY_FRACTION = 0.05

TIMESTAMP = pa.timestamp("us", tz="UTC")
SCHEMAS: dict[str, pa.Schema] = {
    "user_table": pa.schema(
        [
            ("user_id", pa.int64()),
            ("signup_date", TIMESTAMP),
            ("age", pa.int64()),
            ("gender", pa.string()),
            ("country", pa.string()),
            ("income", pa.float64()),
            ("device", pa.string()),
            ("account_age_days", pa.int64()),
            ("premium", pa.bool_()),
        ]
    ),
    "event_logs": pa.schema(
        [
            ("event_id", pa.int64()),
            ("user_id", pa.int64()),
            ("session_id", pa.int64()),
            ("event_timestamp", TIMESTAMP),
            ("event_type", pa.string()),
            ("metadata", pa.string()),
        ]
    ),
    "review_table": pa.schema(
        [
            ("review_id", pa.int64()),
            ("user_id", pa.int64()),
            ("product_id", pa.int64()),
            ("review_timestamp", TIMESTAMP),
            ("rating", pa.int64()),
            ("review_text", pa.string()),
            ("helpful_votes", pa.int64()),
            ("total_votes", pa.int64()),
        ]
    ),
    "target_table": pa.schema(
        [("user_id", pa.int64()), ("event_timestamp", TIMESTAMP), ("churned", pa.int64())]
    ),
    "_oracle": pa.schema(
        [("user_id", pa.int64()), ("event_timestamp", TIMESTAMP), ("churn_probability", pa.float64())]
    ),
    "_reviews_truth": pa.schema([("review_id", pa.int64()), ("aspect", pa.string()), ("tone", pa.string())]),
}
"""The Arrow schema of every parquet file the generator writes (docs/data-model.md)."""

STEPS = (
    "users and satisfaction",
    "labels and oracle",
    "days: events, reviews",
    "review table",
    "event table",
    "write",
)
EVENTS_STREAM, REVIEWS_STREAM, DIRTY_STREAM = 1, 2, 3
"""The per-day random streams (``day_rng(seed, stream, day)``)."""


def sample_days(
    pop: Population, spec: WorldSpec, seed: int, drift: bool, dirty_fraction: float, spill_folder: Path
) -> tuple[EventSpill, Reviews]:
    """Draw the window day by day: each day's sessions, events and reviews from that day's own
    streams, then keep what lies before the writer's churn and the world's end. The kept events
    are spilled to ``spill_folder`` day by day (a million users' would take 1.7 GB in memory),
    grouped by ``EVENT_SLICE_USERS`` users for ``write_event_logs``, and ranked in time; the
    reviews (a few per cent of the events) are returned whole."""
    end = float(spec.window_days)
    kept_reviews: list[Reviews] = []
    sessions_before = 0
    with EventSpill(spill_folder, EVENT_SLICE_USERS, pop.n) as spill:
        for day in range(spec.window_days):
            events, n_sessions = sample_day_events(
                day_rng(seed, EVENTS_STREAM, day),
                day_rng(seed, DIRTY_STREAM, day),
                pop,
                spec,
                drift,
                day,
                dirty_fraction,
            )
            events.session_id = events.session_id + sessions_before + 1
            sessions_before += n_sessions
            reviews = sample_day_reviews(day_rng(seed, REVIEWS_STREAM, day), pop, events, spec, drift, day)
            event_limit = days_to_us(spec, np.minimum(pop.churn_day[events.user_index], end))
            spill.append(events.take(np.nonzero(events.timestamp_us < event_limit)[0]))
            del events
            review_limit = days_to_us(spec, np.minimum(pop.churn_day[reviews.user_index], end))
            kept_reviews.append(reviews.take(np.nonzero(reviews.timestamp_us < review_limit)[0]))
        spill.finish()
    return spill, Reviews.concatenate(kept_reviews)


def window_days_until(end: date | None) -> int:
    """The window length of a world whose last day is ``end``; a clear error when it is too short
    for one label cutoff or longer than the generator supports."""
    if end is None:
        return WINDOW_DAYS
    first = WORLD_START.date()
    days = (end - first).days + 1
    shortest = FIRST_CUTOFF_DAY + LABEL_HORIZON_DAYS
    if days < shortest:
        earliest = first + timedelta(days=shortest - 1)
        raise InvalidInputError(
            f"--end {end.isoformat()} is too early: the world starts on {first.isoformat()} and needs "
            f"{shortest} days for its first label cutoff and horizon; use {earliest.isoformat()} or later"
        )
    if days > MAX_WINDOW_DAYS:
        latest = first + timedelta(days=MAX_WINDOW_DAYS - 1)
        raise InvalidInputError(f"--end {end.isoformat()} is too late: use {latest.isoformat()} or earlier")
    return days


def parse_end_day(value: str | None) -> date | None:
    """Parse ``--end YYYY-MM-DD`` (the world's last day); None keeps the standard calendar."""
    if value is None or not str(value).strip():
        return None
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInputError(f"--end must be a date as YYYY-MM-DD, got {value!r}") from None


def parse_positive_int(name: str, value: str, allow_zero: bool = False) -> int:
    """Parse a command-line integer; a clear one-line error when it is not one or is too small."""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise InvalidInputError(f"{name} must be a whole number, got {text!r}") from None
    lowest = 0 if allow_zero else 1
    if number < lowest:
        bound = "0 or more" if allow_zero else "greater than 0"
        raise InvalidInputError(f"{name} must be {bound}, got {number}")
    return number


def generate_world(
    settings: Settings,
    users: int,
    seed: int,
    drift: bool = True,
    show_progress: bool = True,
    dirty_fraction: float = 0.0005,
    end: date | None = None,
) -> dict[str, object]:
    """Draw the raw world for ``users`` users from ``seed`` and write it under ``settings.raw_dir``.

    ``end`` is the world's last day (default: the standard calendar's, ``WorldSpec().last_day``).
    The same ``users``, ``seed``, ``drift`` and ``dirty_fraction`` give byte-identical files, and
    worlds that differ only in ``end`` agree row for row before the earlier end: every raw row
    dated before t is drawn from the world's state and randomness before t.
    ``users`` counts the users signed up by the standard calendar's end; a world that ends earlier
    holds those signed up before its end.
    Returns a summary (rows per table, churn rate per cutoff, seconds) for the CLI."""
    if not 1 <= users <= MAX_USERS:
        raise InvalidInputError(f"USERS must be between 1 and {MAX_USERS:,}, got {users}")
    if seed < 0:
        raise InvalidInputError(f"SEED must be 0 or more, got {seed}")
    if not 0.0 <= dirty_fraction <= MAX_DIRTY_FRACTION:
        raise InvalidInputError(
            f"dirty fraction must be between 0 and {MAX_DIRTY_FRACTION}, got {dirty_fraction}"
        )
    window_days = window_days_until(end)
    raw_dir = Path(settings.raw_dir)
    new_folders = [p for p in (raw_dir.parent, *raw_dir.parent.parents) if not p.exists()]
    staging = _make_staging_dir(raw_dir)
    written = False

    began = time.perf_counter()
    spec = WorldSpec(users=users, seed=seed, drift=drift, window_days=window_days)
    streams = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(4)]
    population_rng, _, review_rng, _ = streams  # per-user draws; the days draw from day_rng

    progress = Progress(
        TextColumn("[bold]generate[/] {task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task(STEPS[0], total=len(STEPS))

            def step(name: str) -> None:
                progress.update(task, advance=1, description=name)
                logger.debug("generate: %s", name)

            pop = sample_population(population_rng, review_rng, users, spec, drift, len(CATEGORIES))
            step(STEPS[1])
            target, oracle = build_labels(pop, spec)
            # the labels were the hazard's last use: drop its columns before the days are drawn
            pop = dataclasses.replace(pop, cum_hazard=np.empty((0, 0)))
            # the labels are written now, their summary kept: the days never hold them
            rates = target.groupby("event_timestamp")["churned"].mean()
            oracle_auc = roc_auc(target["churned"].to_numpy(), oracle["churn_probability"].to_numpy())
            n_target = len(target)
            for name, table in (("target_table", target), ("_oracle", oracle)):
                _write_parquet(table, SCHEMAS[name], staging / f"{name}.parquet")
            del target, oracle, table
            step(STEPS[2])
            spill, reviews = sample_days(pop, spec, seed, drift, dirty_fraction, staging / EVENT_SPILL_FOLDER)
            step(STEPS[3])
            review_frame, truth = review_tables(reviews, pop)
            del reviews
            step(STEPS[4])
            n_events, n_sessions = spill.n, spill.n_sessions
            n_dirty = write_event_logs(spill, spec, staging / "event_logs.parquet")
            shutil.rmtree(spill.folder)  # not part of the world (a failed run loses it with staging)
            del spill
            step(STEPS[5])
            user_table = pop.user_table(spec)
            n_users = len(user_table)  # those signed up before the world's end
            for name, table in (
                ("user_table", user_table),
                ("review_table", review_frame),
                ("_reviews_truth", truth),
            ):
                _write_parquet(table, SCHEMAS[name], staging / f"{name}.parquet", USER_ORDERED.get(name))
            spec.save(staging)
            os.chmod(staging / WORLD_SPEC_FILE, 0o644)
            _swap_into_place(staging, raw_dir)
            written = True
            progress.update(task, advance=1, description="done")
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the raw world to {raw_dir}: {exc.strerror or exc}; "
            "point DATA_DIR at a writable folder"
        ) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not written:  # leave no empty DATA_DIR behind either
            for folder in new_folders:
                with contextlib.suppress(OSError):
                    folder.rmdir()

    summary: dict[str, object] = {
        "users": n_users,
        "seed": seed,
        "last day": spec.last_day.isoformat(),
        "drift": drift,
        "events": n_events,
        "unusable events": n_dirty,
        "sessions": n_sessions,
        "reviews": len(review_frame),
        "reviewers": f"{review_frame['user_id'].nunique() / max(n_users, 1):.1%} of users",
        "target rows": n_target,
        "churn rate per cutoff": f"{rates.min():.1%} .. {rates.max():.1%}",
        "oracle ROC-AUC": "n/a" if np.isnan(oracle_auc) else round(oracle_auc, 3),
        "output": str(raw_dir),
        "seconds": round(time.perf_counter() - began, 1),
    }
    logger.info("raw world written to %s in %.1f s", raw_dir, summary["seconds"])
    return summary


def _make_staging_dir(raw_dir: Path) -> Path:
    """Create an empty staging folder beside ``raw_dir`` (proving the place is writable) before
    any work is done."""
    try:
        raw_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.", suffix=".tmp", dir=raw_dir.parent))
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the raw world to {raw_dir}: {exc.strerror or exc}; "
            "point DATA_DIR at a writable folder"
        ) from None


def _swap_into_place(staging: Path, raw_dir: Path) -> None:
    """Replace ``raw_dir`` by the fully written ``staging`` folder: readers see the old world or
    the new one, never a mixture; the old one is restored if the swap fails."""
    os.chmod(staging, 0o755)
    old: Path | None = None
    if raw_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.old.", dir=raw_dir.parent))
        os.replace(raw_dir, old)
    try:
        os.replace(staging, raw_dir)
    except OSError:
        if old is not None:
            os.replace(old, raw_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


USER_ORDERED: dict[str, list[tuple[str, str]]] = {
    "event_logs": [("user_id", "ascending"), ("event_timestamp", "ascending"), ("event_id", "ascending")],
    "review_table": [("user_id", "ascending"), ("review_timestamp", "ascending"), ("review_id", "ascending")],
}
"""Tables stored in user order, in row groups of ``USER_ROW_GROUP`` rows, so that reading one
user's rows (the serving layer's refresh) skips all but one or two row groups."""
USER_ROW_GROUP = 65_536


EVENT_SLICE_USERS = 25_000
"""``event_logs`` is assembled and written this many users at a time (its strings would take
about 2 GB per million users at once); the days spill their events grouped by these slices."""
EVENT_SPILL_FOLDER = "_events_spill"
"""The folder inside the staging folder that holds the spilled events until ``event_logs`` is
written."""


def write_event_logs(spill: EventSpill, spec: WorldSpec, path: Path) -> int:
    """Write ``event_logs`` (the world's spilled events) in user order, as ``_write_parquet`` would
    the whole table, but a slice of users at a time read back from the spill: each event's id is
    its rank in time, from 1, and the file is the same, row group for row group. Rows with a null
    user sort last, as Arrow sorts nulls. Returns the number of unusable rows."""
    schema, sort_keys = SCHEMAS["event_logs"], USER_ORDERED["event_logs"]
    dirty = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        row_groups = RowGroupCutter(writer, USER_ROW_GROUP)
        for events, time_rank in spill.user_slices():
            table, n_dirty = event_table(events, spec, event_id=time_rank.astype(np.int64) + 1)
            row_groups.write(table.cast(schema).sort_by(sort_keys))
            dirty += n_dirty
        row_groups.flush()
    return dirty


def _write_parquet(
    table: pd.DataFrame | pa.Table,
    schema: pa.Schema,
    path: Path,
    order: list[tuple[str, str]] | None = None,
) -> None:
    """Write ``table`` with exactly ``schema`` (zstd, no pandas index), sorted by ``order`` if given."""
    arrow = (
        table
        if isinstance(table, pa.Table)
        else pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    ).cast(schema)
    if order is None:
        pq.write_table(arrow, path, compression="zstd")
    else:
        pq.write_table(arrow.sort_by(order), path, compression="zstd", row_group_size=USER_ROW_GROUP)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks)."""
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
