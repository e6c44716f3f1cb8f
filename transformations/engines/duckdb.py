"""The in-process engine: DuckDB and NumPy over local parquet, one partition of users at a time.

Users are cut into ranges of ``user_id`` of at most ``PARTITION_USERS`` clean users each. A
world that fits in one range runs as one partition (all users at once, the reference of the
parity tests). A larger one runs partition by partition: each range's raw rows are read by a
pushed-down filter (``read_raw_user_range``; the generated tables are stored in user order, so a
range reads only its own row groups), validated and transformed, and its views handed to the job,
which spills them and merges them per as-of time. So memory follows the partition, not the world.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnfs.settings import Settings
from transformations.engines.base import FeatureEngine, JobContext, Output, Steps
from transformations.groups import (
    GROUP_INPUT,
    ROW_POSITION,
    RUN_ORDER,
    STEP_NAMES,
    fit_topics_on_sample,
    group_views,
    raw_table_files,
    read_raw_table,
    read_raw_user_range,
    topic_fit_sample,
    validate,
    without_position,
)

PARTITION_USERS = 100_000
"""Clean users per partition: 100,000 users' events (2.4 million) and activity snapshots take
about 1.8 GB in this process (docs/benchmarks.md, ``features``)."""

UserRange = tuple[int | None, int | None]


def user_ranges(user_ids: np.ndarray, per_partition: int) -> list[UserRange]:
    """Cut the line of user ids into ranges ``[low, high)`` of at most ``per_partition`` of
    ``user_ids`` each; the first range has no lower end and the last no upper end, so every raw
    row (an unknown or missing user too) falls in exactly one."""
    ids = np.unique(np.asarray(user_ids, dtype=np.int64))
    cuts = [int(ids[i]) for i in range(per_partition, len(ids), per_partition)]
    lows: list[int | None] = [None, *cuts]
    highs: list[int | None] = [*cuts, None]
    return list(zip(lows, highs, strict=True))


class DuckDBEngine(FeatureEngine):
    """The feature groups in this process, one range of users at a time."""

    name = "duckdb"

    def __init__(self, settings: Settings, partition_users: int | None = None) -> None:
        self.settings = settings
        self.partition_users = partition_users or settings.partition_users or PARTITION_USERS

    def partitioned(self) -> bool:
        """Does this world run in partitions (more ``user_table`` rows than one holds)?"""
        files = raw_table_files(self.settings, "user_table")
        return sum(pq.read_metadata(f).num_rows for f in files) > self.partition_users

    def step_count(self, groups: Sequence[str]) -> int:
        if self.partitioned():
            return 2 + len(groups)  # the users, one step per group (its partitions), the writes
        return super().step_count(groups)

    def outputs(self, groups: Sequence[str], context: JobContext, steps: Steps) -> Iterator[Output]:
        settings, spec = context.settings, context.spec
        partitioned = self.partitioned()
        with steps.step(STEP_NAMES["user_table"]):
            users = validate("user_table", read_raw_table(settings, "user_table"), None, spec)
        yield Output("quarantine", "user_table", users.quarantined)
        ranges = user_ranges(users.clean.column("user_id").to_numpy(), self.partition_users)
        for group in (g for g in RUN_ORDER if g in groups):
            if partitioned:
                yield from self._partitioned(group, users.clean, ranges, context, steps)
            else:
                yield from self._whole(group, users.clean, context, steps)

    def _whole(self, group: str, users: pa.Table, context: JobContext, steps: Steps) -> Iterator[Output]:
        """One group over all users at once."""
        settings, spec = context.settings, context.spec
        source = GROUP_INPUT[group]
        rows = None
        if source is not None:
            with steps.step(STEP_NAMES[source]):
                split = validate(source, read_raw_table(settings, source), users, spec)
            yield Output("quarantine", source, split.quarantined)
            rows = split.clean
            del split
        with steps.step(STEP_NAMES[group]), steps.paused() if group == "review" else nullcontext():
            views = group_views(group, users, rows, context.as_of_times, settings, context.show_progress)
        del rows
        for name, table in views.items():
            yield Output("view", name, table)

    def _partitioned(
        self,
        group: str,
        users: pa.Table,
        ranges: list[UserRange],
        context: JobContext,
        steps: Steps,
    ) -> Iterator[Output]:
        """One group, range by range: every view comes as one output per range (the job merges
        them), the source's quarantined rows as one output in file order."""
        settings, spec = context.settings, context.spec
        source = GROUP_INPUT[group]
        quarantined: list[pa.Table] = []
        with steps.step(f"{STEP_NAMES[group]} ({len(ranges)} partitions)"):
            if group == "review":
                self._fit_topics_if_missing(users, ranges, context)
            for low, high in ranges:
                part_users = _users_in(users, low, high)
                rows = None
                if source is not None:
                    split = validate(
                        source, read_raw_user_range(settings, source, low, high), part_users, spec
                    )
                    quarantined.append(split.quarantined)
                    rows = without_position(split.clean)
                    del split
                views = group_views(
                    group,
                    part_users,
                    rows,
                    context.as_of_times,
                    settings,
                    show_progress=False,
                    fit_topics=False if group == "review" else None,
                    compact_cache=False,
                )
                del rows
                for name, table in views.items():
                    yield Output("view", name, table)
                del views
        if source is not None:
            table = pa.concat_tables(quarantined, promote_options="permissive")
            yield Output("quarantine", source, table.sort_by(ROW_POSITION).drop_columns([ROW_POSITION]))
        if group == "review":
            from transformations.embeddings import compact_cache

            compact_cache(settings)

    def _fit_topics_if_missing(self, users: pa.Table, ranges: list[UserRange], context: JobContext) -> None:
        """Embed the reviews range by range (filling the cache) and fit the topic model on the
        training period's, as the one-partition run would, when no current model exists."""
        from transformations.topics import current_topic_model

        settings, spec = context.settings, context.spec
        if current_topic_model(settings, settings.embedding_model) is not None:
            return
        samples = []
        for low, high in ranges:
            reviews = read_raw_user_range(settings, "review_table", low, high)
            split = validate("review_table", reviews, _users_in(users, low, high), spec)
            samples.append(topic_fit_sample(split.clean, settings, spec.train_end))
        fit_topics_on_sample(samples, settings, spec.train_end)


def _users_in(users: pa.Table, low: int | None, high: int | None) -> pa.Table:
    ids = users.column("user_id")
    mask = pa.array(np.ones(users.num_rows, dtype=bool))
    if low is not None:
        mask = pc.and_(mask, pc.greater_equal(ids, low))
    if high is not None:
        mask = pc.and_(mask, pc.less(ids, high))
    return users.filter(mask)
