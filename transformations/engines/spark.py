"""The Spark engine: buckets of users on a Spark cluster, the same functions in every bucket.

Every feature is computed per user, so users are split into buckets (``user_id mod B``) and each
raw table is grouped by bucket; one Python task per bucket (``groupBy(bucket).applyInArrow``, or
``cogroup`` with the users for events, reviews and targets) validates the bucket's rows and runs
the group's pure function on them (``transformations.groups``). The DuckDB engine is the
one-bucket case, so both compute the same rows.

- Row order: a raw row's position in its file (``_metadata.row_index``) travels with it, so a
  bucket sees its rows in file order ("first row wins" for a repeated user id) and quarantined
  rows come back in file order.
- Results: each bucket returns its outputs as Arrow IPC streams (exact types: list<float32>
  embeddings, UTC timestamps), collected on the driver and written by the job's writer as the
  offline store's files, like the DuckDB engine's.
- Reviews: the encoder is loaded once per Python worker (Spark reuses its workers) and the
  embedding cache is honoured (a cached text is never embedded again). When no current topic model
  exists yet (none, or none meeting ``TOPIC_COUNT``), a first pass embeds the reviews and returns
  the training period's vectors; the driver fits the model on them (``fit_topic_model``, K chosen
  as the DuckDB engine chooses it), in the DuckDB engine's order, before the buckets transform
  with it.
- Workers read ``DATA_DIR`` (the raw tables, the cache and the topic model), so on a cluster of
  several machines it must be shared storage (NFS, or a mounted bucket).
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from churnfs.settings import Settings
from churnfs.spark import job_failure, spark_session
from transformations.engines.base import FeatureEngine, JobContext, Output, Steps
from transformations.groups import (
    FILE_RANK,
    GROUP_INPUT,
    ROW_POSITION,
    RUN_ORDER,
    STEP_NAMES,
    checked_raw_files,
    fit_topics_on_sample,
    group_views,
    topic_fit_sample,
    validate,
    without_position,
)
from transformations.validation import RAW_SCHEMAS, Split, conform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

BUCKET = "__bucket"
PAYLOAD_SCHEMA = "name string, payload binary"
"""What a bucket's task returns: one row per output, the output's rows as an Arrow IPC stream."""
USERS_PER_BUCKET = 25_000
"""Automatic bucket count: at least 4 per task slot, at most this many users each (a bucket's
outputs travel as one value; 25,000 users' activity snapshots are about 80 MB)."""


class SparkEngine(FeatureEngine):
    """The feature groups over buckets of users on ``SPARK_MASTER``."""

    name = "spark"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = spark_session(settings)  # checks Java, PySpark and the master first

    def step_count(self, groups: Sequence[str]) -> int:
        return 2 + len(groups)  # the users, one pass per group (read, validate, compute), the writes

    def outputs(self, groups: Sequence[str], context: JobContext, steps: Steps) -> Iterator[Output]:
        spark = self.session
        slots = max(1, spark.sparkContext.defaultParallelism)
        user_rows = sum(pq.read_metadata(f).num_rows for f in self._files("user_table"))
        buckets = self.settings.spark_buckets or max(4 * slots, math.ceil(user_rows / USERS_PER_BUCKET))
        spark.conf.set("spark.sql.shuffle.partitions", str(buckets))
        work = _worker_context(context, slots)
        logger.info(
            "spark engine: %d buckets on %s (%d task slots)", buckets, spark.sparkContext.master, slots
        )

        users = self._read("user_table", buckets)
        with steps.step(STEP_NAMES["user_table"]):
            payloads = _run(
                users.groupBy(BUCKET).applyInArrow(_grouped(_users_task, context=work), PAYLOAD_SCHEMA)
            )
        yield from _outputs(payloads)
        for group in (g for g in RUN_ORDER if g in groups):
            source = GROUP_INPUT[group]
            with steps.step(f"{STEP_NAMES[group]} (spark)"):
                if source is None:
                    by_user = _grouped(_group_task, rows=None, group=group, context=work)
                    plan = users.groupBy(BUCKET).applyInArrow(by_user, PAYLOAD_SCHEMA)
                else:
                    rows = self._read(source, buckets)
                    if group == "review":
                        _ensure_topic_model(users, rows, work)
                    task = _cogrouped(_group_task, group=group, context=work)
                    plan = (
                        users.groupBy(BUCKET).cogroup(rows.groupBy(BUCKET)).applyInArrow(task, PAYLOAD_SCHEMA)
                    )
                payloads = _run(plan)
                if group == "review":
                    from transformations.embeddings import compact_cache

                    compact_cache(work.settings)
            yield from _outputs(payloads)

    def _files(self, table: str) -> list[str]:
        """The table's files in the DuckDB reader's order (``checked_raw_files``: the generated
        file, then the parts the stream appended), as absolute paths."""
        return [str(path.resolve()) for path in checked_raw_files(self.settings, table)]

    def _read(self, table: str, buckets: int) -> DataFrame:
        """A raw table's contract columns, each row's position (its file's rank in
        ``raw_table_files``, then its index in the file) and its user's bucket."""
        from pyspark.sql import functions as F

        files = self._files(table)
        # Spark names a row's file as a URI (file:/a/b%20c.parquet): decoded, it is the path.
        path = F.url_decode(F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", ""))
        ranks = F.create_map(*(F.lit(x) for rank, f in enumerate(files) for x in (f, rank)))
        rank = F.coalesce(F.element_at(ranks, path), F.raise_error(F.concat(F.lit("unlisted file "), path)))
        return (
            self.session.read.parquet(*files)
            .select(
                *RAW_SCHEMAS[table],
                (rank * F.lit(FILE_RANK) + F.col("_metadata.row_index")).alias(ROW_POSITION),
            )
            .withColumn(BUCKET, F.coalesce(F.pmod(F.col("user_id"), F.lit(buckets)), F.lit(-1)))
        )


def _worker_context(context: JobContext, slots: int) -> JobContext:
    """The context a bucket's task gets: absolute paths (workers run in their own folders), no
    progress bars, and the embedding threads shared among the tasks running at once."""
    settings = context.settings
    threads = settings.embedding_threads or max(1, (os.cpu_count() or 1) // slots)
    worker = settings.model_copy(
        update={"data_dir": settings.data_dir.resolve(), "embedding_threads": threads}
    )
    return JobContext(
        settings=worker, spec=context.spec, as_of_times=context.as_of_times, show_progress=False
    )


# --- what runs in a bucket's task ------------------------------------------------------------------


def _grouped(task: Callable[..., pa.Table], **kwargs: Any) -> Callable[[pa.Table], pa.Table]:
    """``task`` as a function of one bucket's table, for ``groupBy(...).applyInArrow``."""

    def run(table):  # type: ignore[no-untyped-def]  # PySpark reads the arity, and chokes on hints
        return task(table, **kwargs)

    return run  # type: ignore[no-any-return]


def _cogrouped(task: Callable[..., pa.Table], **kwargs: Any) -> Callable[[pa.Table, pa.Table], pa.Table]:
    """``task`` as a function of one bucket's two tables, for ``cogroup(...).applyInArrow``."""

    def run(users, rows):  # type: ignore[no-untyped-def]  # PySpark reads the arity, and chokes on hints
        return task(users, rows, **kwargs)

    return run  # type: ignore[no-any-return]


def _in_file_order(table: str, rows: pa.Table) -> pa.Table:
    """A bucket's rows of ``table`` in file order, conformed, keeping their file positions."""
    rows = rows.sort_by(ROW_POSITION)
    return conform(table, rows).append_column(ROW_POSITION, rows.column(ROW_POSITION))


def _users_task(users: pa.Table, context: JobContext) -> pa.Table:
    split = validate("user_table", _in_file_order("user_table", users), None, context.spec)
    return _payload([("quarantine:user_table", split.quarantined)])


def _group_task(users: pa.Table, rows: pa.Table | None, group: str, context: JobContext) -> pa.Table:
    """Validate a bucket's users and rows, then run the group on them (what the DuckDB engine
    does for all users at once)."""
    outputs: list[tuple[str, pa.Table]] = []
    source = GROUP_INPUT[group]
    clean_users, split = _validated(users, source, rows, context)
    clean = None
    if source is not None and split is not None:
        outputs.append((f"quarantine:{source}", split.quarantined))
        clean = without_position(split.clean)
    views = group_views(
        group,
        clean_users,
        clean,
        context.as_of_times,
        context.settings,
        show_progress=False,
        fit_topics=False,
        compact_cache=False,
    )
    outputs.extend((f"view:{name}", table) for name, table in views.items())
    return _payload(outputs)


def _topic_sample_task(users: pa.Table, reviews: pa.Table, context: JobContext) -> pa.Table:
    """Embed a bucket's clean reviews (through the cache) and return the training period's
    (``topic_fit_sample``)."""
    _, split = _validated(users, "review_table", reviews, context)
    assert split is not None
    sample = topic_fit_sample(without_position(split.clean), context.settings, context.spec.train_end)
    return _payload([("topic sample", sample)])


def _validated(
    users: pa.Table, source: str | None, rows: pa.Table | None, context: JobContext
) -> tuple[pa.Table, Split | None]:
    """A bucket's clean users, and the split of its rows of ``source`` (None without rows)."""
    spec = context.spec
    clean_users = without_position(
        validate("user_table", _in_file_order("user_table", users), None, spec).clean
    )
    if source is None or rows is None:
        return clean_users, None
    return clean_users, validate(source, _in_file_order(source, rows), clean_users, spec)


def _payload(outputs: list[tuple[str, pa.Table]]) -> pa.Table:
    names, blobs = [], []
    for name, table in outputs:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        names.append(name)
        blobs.append(sink.getvalue().to_pybytes())
    return pa.table({"name": pa.array(names, pa.string()), "payload": pa.array(blobs, pa.binary())})


# --- on the driver ---------------------------------------------------------------------------------


def _run(plan: DataFrame) -> dict[str, list[pa.Table]]:
    """Run a plan of bucket tasks; each output's tables, one per bucket. A failed task (or lost
    executor) is a ``SparkJobError`` naming the cause."""
    from py4j.protocol import Py4JError
    from pyspark.errors.exceptions.captured import CapturedException

    try:
        collected = plan.toArrow()
    except (CapturedException, Py4JError) as exc:
        raise job_failure(exc) from exc
    tables: dict[str, list[pa.Table]] = defaultdict(list)
    for name, blob in zip(
        collected.column("name").to_pylist(), collected.column("payload").to_pylist(), strict=True
    ):
        tables[name].append(pa.ipc.open_stream(blob).read_all())
    return tables


def _outputs(payloads: dict[str, list[pa.Table]]) -> Iterator[Output]:
    """The job's outputs from the buckets' tables: quarantined rows back in file order."""
    for key in sorted(payloads):
        kind, _, name = key.partition(":")
        table = pa.concat_tables(payloads[key], promote_options="permissive")
        if kind == "quarantine":
            table = table.sort_by(ROW_POSITION).drop_columns([ROW_POSITION])
            yield Output("quarantine", name, table)
        else:
            yield Output("view", name, table)


def _ensure_topic_model(users: DataFrame, reviews: DataFrame, context: JobContext) -> None:
    """Fit the topic model when no current one exists, as the DuckDB engine would: on the
    embeddings of the reviews before the training period's end (``fit_topics_on_sample``)."""
    from transformations.embeddings import compact_cache
    from transformations.topics import current_topic_model

    settings = context.settings
    if current_topic_model(settings, settings.embedding_model) is not None:
        return
    task = _cogrouped(_topic_sample_task, context=context)
    plan = users.groupBy(BUCKET).cogroup(reviews.groupBy(BUCKET)).applyInArrow(task, PAYLOAD_SCHEMA)
    parts = _run(plan).get("topic sample", [])
    compact_cache(settings)
    fit_topics_on_sample(parts, settings, context.spec.train_end)
