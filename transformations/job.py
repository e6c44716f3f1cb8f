"""The batch feature job: raw world -> quarantine + offline store (``churnfs features``).

An engine (``transformations.engines``: DuckDB in this process, or Spark) reads
``DATA_DIR/raw/``, validates it at the edge and runs the pure group functions on the as-of
calendar; this job writes what it returns: unusable rows to
``DATA_DIR/quarantine/<table>.parquet`` (with a ``reason``) and one parquet file per feature view
to ``DATA_DIR/offline_store/``, every row stamped with the same ``created_timestamp`` (the job's
start). All files are swapped in together at the end. Then, once per topic model version, its
topics are labelled (``label_topics``), whichever engine fitted it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from churnfs.errors import MissingDataError
from churnfs.io import RowGroupCutter, atomic_path, write_parquet_atomic
from churnfs.settings import Settings
from churnfs.store.parts import drop_parts
from churnfs.world import load_world_spec
from transformations.engines import get_engine
from transformations.engines.base import JobContext
from transformations.groups import (  # re-exported: the job's public names
    GROUP_VIEWS,
    GROUPS,
    raw_table_path,
    read_raw_table,
    select_groups,
)
from transformations.profile import UTC_US, timestamps_us
from transformations.validation import count_reasons

__all__ = [
    "GROUPS",
    "GROUP_VIEWS",
    "build_features",
    "label_topics",
    "raw_table_path",
    "read_raw_table",
    "select_groups",
    "with_created_timestamp",
    "write_offline_group",
]

logger = logging.getLogger(__name__)


def with_created_timestamp(table: pa.Table, created: datetime) -> pa.Table:
    """Insert ``created_timestamp`` (the same instant on every row) after ``event_timestamp``."""
    created_us = timestamps_us(pa.array([created], type=UTC_US))[0]
    column = pa.array(np.full(table.num_rows, created_us, dtype=np.int64)).cast(UTC_US)
    table = table.set_column(
        table.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        table.column("event_timestamp").cast(UTC_US),
    )
    return table.add_column(table.schema.get_field_index("event_timestamp") + 1, "created_timestamp", column)


OFFLINE_ROW_GROUP = 65_536
"""Most rows in one row group of an offline-store file. An as-of time of more users is cut into
ranges of users, so that a reader holding one row group (the bulk engine, the API's fallback, the
merge of partitions) holds a bounded piece: a million users' review vectors at one as-of time are
about 1.5 GB, a row group of them about 100 MB."""


def write_offline_group(table: pa.Table, path: Path) -> None:
    """Write one group's snapshots sorted by (``event_timestamp``, ``user_id``), each as-of time in
    row groups of at most ``OFFLINE_ROW_GROUP`` rows (a row group never spans two as-of times), so
    that materialization reads only the last snapshot's row groups; pandas schema metadata is
    dropped (it makes list columns unreadable for some readers)."""
    if not _sorted_by_time_then_user(table):
        table = table.sort_by([("event_timestamp", "ascending"), ("user_id", "ascending")])
    table = table.replace_schema_metadata(None)
    counts = pc.value_counts(table.column("event_timestamp")).field("counts").to_numpy()
    with atomic_path(path) as tmp, _offline_writer(tmp, table.schema) as writer:
        offset = 0
        for count in counts:  # value_counts keeps first-seen order: the sorted as-of order
            writer.write_table(table.slice(offset, int(count)), row_group_size=OFFLINE_ROW_GROUP)
            offset += int(count)


def _offline_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The offline store's parquet writer. Dictionary-encode keys, flags, counts and categories
    only: float features and vectors rarely repeat, and trying costs time (the review group's
    file: 1.1 s -> 0.7 s, 16% smaller)."""
    dictionary = [f.name for f in schema if not (pa.types.is_floating(f.type) or pa.types.is_list(f.type))]
    return pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=dictionary)


def merge_offline_runs(runs: Sequence[Path], path: Path) -> None:
    """Merge files written by ``write_offline_group`` for disjoint sets of users (the partitions
    of one view, in ``user_id`` order) into one such file, with the row groups one write of all
    users would have: per as-of time, the runs' row groups of that time in user order, re-cut into
    ``OFFLINE_ROW_GROUP`` rows. Memory holds about two row groups; only runs that are not in user
    order (not the engines' partitions) make it hold one whole as-of time, to sort it."""
    files = [pq.ParquetFile(run) for run in runs]
    schema = pa.unify_schemas([f.schema_arrow for f in files], promote_options="permissive")
    by_time: dict[int, list[tuple[pq.ParquetFile, int]]] = {}
    for file in files:
        for group in range(file.num_row_groups):
            first = file.read_row_group(group, columns=["event_timestamp"]).column(0)[0]
            by_time.setdefault(first.value, []).append((file, group))
    with atomic_path(path) as tmp, _offline_writer(tmp, schema) as writer:
        row_groups = RowGroupCutter(writer, OFFLINE_ROW_GROUP)
        for as_of in sorted(by_time):
            pieces = by_time[as_of]
            if _in_user_order(pieces):
                for file, group in pieces:
                    row_groups.write(file.read_row_group(group).cast(schema))
            else:
                table = pa.concat_tables([f.read_row_group(g).cast(schema) for f, g in pieces])
                row_groups.write(table.sort_by("user_id"))
            row_groups.flush()  # a row group never spans two as-of times


def _in_user_order(pieces: Sequence[tuple[pq.ParquetFile, int]]) -> bool:
    """Do these row groups, in this order, hold ascending user ids (each sorted, each starting
    after the previous one ends)? Read from the user column alone."""
    last = None
    for file, group in pieces:
        users = file.read_row_group(group, columns=["user_id"]).column(0).to_numpy()
        if not len(users):
            continue
        if np.any(np.diff(users) < 0) or (last is not None and users[0] <= last):
            return False
        last = users[-1]
    return True


def _sorted_by_time_then_user(table: pa.Table) -> bool:
    """Is ``table`` already in (``event_timestamp``, ``user_id``) order? A check costs two passes
    over two columns; a needless sort copies every row (384 floats each in the review group)."""
    if table.num_rows < 2:
        return True
    times = table.column("event_timestamp").cast(pa.int64()).to_numpy()
    users = table.column("user_id").to_numpy()
    time_step, user_step = np.diff(times), np.diff(users)
    return bool(np.all((time_step > 0) | ((time_step == 0) & (user_step >= 0))))


class _Steps:
    """A rich progress bar over the job's named steps (silent when disabled)."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task("offline store", total=total)

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        self._progress.update(self._task, description=description)
        started = time.perf_counter()
        yield
        logger.info("%s (%.1f s)", description, time.perf_counter() - started)
        self._progress.advance(self._task)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hide this bar while a step shows its own (rich allows one live display at a time)."""
        if self._progress.disable:
            yield
            return
        self._progress.stop()
        try:
            yield
        finally:
            self._progress.start()


@contextmanager
def _progress(show_progress: bool, total: int) -> Iterator[_Steps]:
    columns = (
        TextColumn("[bold]{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show_progress) as progress:
        yield _Steps(progress, total)


def build_features(
    settings: Settings,
    groups: Sequence[str] | None = None,
    show_progress: bool = True,
    engine: str | None = None,
) -> dict[str, object]:
    """Build the offline store from the raw world.

    Every output is written to a staging folder first and moved into place only when all groups
    succeeded, so a failed run (a bad table, a lost Spark executor, an interrupt) leaves the
    previous offline store and quarantine as they were.

    Args:
        settings: where the raw world is and where the outputs go.
        groups: any of ``profile``, ``activity``, ``review``, ``labels`` (default: all; the
            review group writes two files, ``GROUP_VIEWS["review"]``).
        show_progress: show a progress bar over the steps.
        engine: ``duckdb`` or ``spark`` (default: ``settings.feature_engine``).

    Returns:
        A summary: engine, as-of times, rows per view, quarantined rows per table and reason, seconds.
    """
    started = time.perf_counter()
    created = datetime.now(UTC)
    selected = select_groups(groups)
    feature_engine = get_engine(engine or settings.feature_engine, settings)
    spec = load_world_spec(settings.raw_dir)
    as_of_times = spec.as_of_calendar(settings.snapshot_frequency_days)
    summary: dict[str, object] = {
        "engine": feature_engine.name,
        "as-of times": len(as_of_times),
        "as-of range": f"{as_of_times[0]:%Y-%m-%d} .. {as_of_times[-1]:%Y-%m-%d}",
    }
    context = JobContext(
        settings=settings, spec=spec, as_of_times=tuple(as_of_times), show_progress=show_progress
    )
    with (
        _progress(show_progress, feature_engine.step_count(selected)) as steps,
        _staging(settings) as staged,
    ):
        runs: dict[Path, list[Path]] = {}
        view_rows: dict[str, int] = {}
        for output in feature_engine.outputs(selected, context, steps):
            if output.kind == "view":
                # a view may come in several outputs (one per partition of users): each is a run
                target = settings.offline_store_dir / f"{output.name}.parquet"
                target_runs = runs.setdefault(target, [])
                run = _staged_file(target).with_suffix(f".run-{len(target_runs):05d}")
                staged[run] = run  # removed if the job fails
                target_runs.append(run)
                write_offline_group(with_created_timestamp(output.table, created), run)
                view_rows[output.name] = view_rows.get(output.name, 0) + output.table.num_rows
                summary[f"rows {output.name}"] = view_rows[output.name]
            else:
                target = settings.quarantine_dir / f"{output.name}.parquet"
                staged[target] = _staged_file(target)
                write_parquet_atomic(output.table, staged[target])
                summary[f"quarantined {output.name}"] = output.table.num_rows
                for reason, count in count_reasons(output.table).items():
                    summary[f"quarantined {output.name} / {reason}"] = count
        for target, target_runs in runs.items():
            staged[target] = _staged_file(target)
            if len(target_runs) == 1:
                os.replace(target_runs[0], staged[target])
            else:
                with steps.paused():
                    logger.info("%s: merging %d partitions", target.stem, len(target_runs))
                merge_offline_runs(target_runs, staged[target])
            for run in target_runs:
                run.unlink(missing_ok=True)
                del staged[run]
        missing = [v for g in selected for v in GROUP_VIEWS[g] if f"rows {v}" not in summary]
        if missing:  # an engine that lost its input must not swap in a partial store
            raise MissingDataError(f"the {feature_engine.name} engine produced no {', '.join(missing)}")
        with steps.step("offline store and quarantine: swap in"):
            for target, staged_path in staged.items():
                os.replace(staged_path, target)
                if target.parent == settings.offline_store_dir:
                    dropped = drop_parts(target)
                    if dropped:
                        logger.info(
                            "%s: %d refreshed parts superseded by the rebuild, removed", target.stem, dropped
                        )
    if "review" in selected:
        label_topics(settings, spec.train_end)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    logger.info(
        "offline store written to %s in %.1f s (%s engine)",
        settings.offline_store_dir,
        summary["seconds"],
        feature_engine.name,
    )
    return summary


def label_topics(settings: Settings, train_end: datetime) -> None:
    """Label the current topic model's topics when its version has no labels yet: class-based
    TF-IDF over the reviews written before ``train_end`` (a seeded sample as large as the fit's),
    their embeddings read through the cache the review group just filled."""
    import pandas as pd

    from transformations.embeddings import review_vectors
    from transformations.topics import MAX_FIT_REVIEWS, SEED, load_topic_model, save_topic_labels

    model = load_topic_model(settings, settings.embedding_model)
    if model is None or model.labels is not None:
        return
    reviews = read_raw_table(settings, "review_table").select(
        ["review_id", "review_timestamp", "review_text"]
    )
    frame = reviews.to_pandas()
    frame = frame[(frame["review_timestamp"] < pd.Timestamp(train_end)) & frame["review_text"].notna()]
    if len(frame) > MAX_FIT_REVIEWS:
        sample = np.random.default_rng(SEED).choice(len(frame), MAX_FIT_REVIEWS, replace=False)
        frame = frame.iloc[np.sort(sample)]
    vectors = review_vectors(frame, settings, show_progress=False)
    save_topic_labels(settings, model, frame["review_text"].astype(str).tolist(), vectors.embeddings)


def _staged_file(target: Path) -> Path:
    """Where ``target``'s new version is written until the swap: a hidden file beside it (same
    filesystem, so the swap is a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".{target.name}.staged"


@contextmanager
def _staging(settings: Settings) -> Iterator[dict[Path, Path]]:
    """Target -> staged file of this run; staged files left by a failure are removed."""
    staged: dict[Path, Path] = {}
    try:
        yield staged
    finally:
        for staged_path in staged.values():
            staged_path.unlink(missing_ok=True)
