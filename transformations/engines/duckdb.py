"""The in-process engine: every user in one partition, DuckDB and NumPy over local parquet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext

from churnfs.settings import Settings
from transformations.engines.base import FeatureEngine, JobContext, Output, Steps
from transformations.groups import (
    GROUP_INPUT,
    RUN_ORDER,
    STEP_NAMES,
    group_views,
    read_raw_table,
    validate,
)


class DuckDBEngine(FeatureEngine):
    """All users at once in this process (the default, and the reference of the parity tests)."""

    name = "duckdb"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def outputs(self, groups: Sequence[str], context: JobContext, steps: Steps) -> Iterator[Output]:
        settings, spec = context.settings, context.spec
        with steps.step(STEP_NAMES["user_table"]):
            users = validate("user_table", read_raw_table(settings, "user_table"), None, spec)
        yield Output("quarantine", "user_table", users.quarantined)
        for group in (g for g in RUN_ORDER if g in groups):
            source = GROUP_INPUT[group]
            rows = None
            if source is not None:
                with steps.step(STEP_NAMES[source]):
                    split = validate(source, read_raw_table(settings, source), users.clean, spec)
                yield Output("quarantine", source, split.quarantined)
                rows = split.clean
                del split
            with steps.step(STEP_NAMES[group]), steps.paused() if group == "review" else nullcontext():
                views = group_views(
                    group, users.clean, rows, context.as_of_times, settings, context.show_progress
                )
            del rows
            for name, table in views.items():
                yield Output("view", name, table)
            del views
