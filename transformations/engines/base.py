"""What a feature engine provides: the outputs of the batch job for the groups asked for.

An engine never computes a feature itself. It reads the raw tables, hands sets of whole users
(their ``user_table`` rows with all their events, reviews or targets) to
``transformations.groups.validate`` and ``group_views``, and yields what they return; the job
(``transformations.job``) writes it. So every engine computes the same rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal, Protocol

import pyarrow as pa

from churnfs.settings import Settings
from churnfs.world import WorldSpec
from transformations.groups import GROUP_INPUT


class Steps(Protocol):
    """The job's progress display: a named, timed step; hidden while a step shows its own bar."""

    def step(self, description: str) -> AbstractContextManager[None]: ...

    def paused(self) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class JobContext:
    """What every partition of one job run needs besides its rows."""

    settings: Settings
    spec: WorldSpec
    as_of_times: tuple[datetime, ...]
    show_progress: bool


@dataclass(frozen=True)
class Output:
    """One output of the job: a feature view's rows, or a raw table's quarantined rows."""

    kind: Literal["view", "quarantine"]
    name: str
    table: pa.Table


class FeatureEngine(ABC):
    """Runs the feature groups over all users; subclasses decide how users are partitioned."""

    name: ClassVar[str]

    @abstractmethod
    def outputs(self, groups: Sequence[str], context: JobContext, steps: Steps) -> Iterator[Output]:
        """Yield the quarantined rows of ``user_table`` and of each raw table the groups read (in
        file order), and every view of each group (rows in any order, without
        ``created_timestamp``), advancing ``steps`` ``step_count(groups) - 1`` times (the job
        takes the last step: the writes)."""

    def step_count(self, groups: Sequence[str]) -> int:
        """Steps of a job over ``groups``: the users, each group's raw table, each group, the writes."""
        return 2 + len(groups) + sum(GROUP_INPUT[g] is not None for g in groups)
