"""The offline fallback: each user's latest snapshot from the offline store, held in memory.

At start-up the service reads, per feature view of the feature service, the newest row of
every user from ``DATA_DIR/offline_store/<view>.parquet`` plus the parts refreshes appended
under ``offline_store/refreshes/<view>/`` (the rows Feast's offline store reads too,
``churnfs.store.offline``). Only the latest row per user is kept, as Arrow columns beside the
sorted user ids (about 120 MB at 100,000 users), so a lookup is a binary search.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from churnfs.errors import MissingDataError
from churnfs.store.offline import source_files

logger = logging.getLogger(__name__)

ViewRow = tuple[datetime | None, dict[str, Any]]
"""One view's values for one user: the snapshot's ``event_timestamp`` and feature values."""


def view_files(offline_store_dir: Path, view: str) -> list[Path]:
    """The parquet files holding a view's snapshots: the batch job's file, then refresh parts."""
    return source_files(Path(offline_store_dir) / f"{view}.parquet")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


EARLIEST = datetime(1700, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def latest_rows(files: Sequence[Path], features: Sequence[str]) -> pa.Table:
    """Each user's newest row (by ``event_timestamp``, then ``created_timestamp``) over ``files``,
    with ``user_id``, ``event_timestamp`` and ``features``.

    The batch job's file alone (no refresh parts) is planned by the bulk engine's reader
    (``churnfs.store.engine.LatestRows``, the rows materialize loads): row group by row group,
    newest first, keys and times only, then the chosen rows' features; with parts, DuckDB over
    all of them."""
    if len(files) == 1:
        from churnfs.store.engine import LatestRows

        plan = LatestRows.plan(
            Path(files[0]),
            join_key="user_id",
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            columns=list(features),
            start=EARLIEST,
            end=LATEST,
        )
        return plan.read().select(["user_id", "event_timestamp", *features])
    return latest_rows_by_duckdb(files, features)


def latest_rows_by_duckdb(files: Sequence[Path], features: Sequence[str]) -> pa.Table:
    """``latest_rows`` over any number of files, by one DuckDB query."""
    import duckdb

    columns = ", ".join(_quote(c) for c in ["user_id", "event_timestamp", *features])
    # Find the newest time per user from two narrow columns first, then pull the wide rows of
    # those (user, time) pairs: the vectors of older snapshots are never held in memory.
    sql = f"""
        WITH src AS (SELECT * FROM read_parquet($files, union_by_name = true)),
        newest AS (SELECT user_id, max(event_timestamp) AS ts FROM src GROUP BY user_id)
        SELECT {columns} FROM (
            SELECT src.*, row_number() OVER (
                PARTITION BY src.user_id ORDER BY src.created_timestamp DESC) AS _rank
            FROM src SEMI JOIN newest ON src.user_id = newest.user_id AND src.event_timestamp = newest.ts
        ) WHERE _rank = 1
        ORDER BY user_id
    """
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(sql, params={"files": [str(f) for f in files]}).to_arrow_table()


class OfflineSnapshots:
    """Latest offline values per (view, user), plus rows refreshed since start-up."""

    def __init__(self, tables: Mapping[str, pa.Table], features: Mapping[str, Sequence[str]]) -> None:
        self._features = {view: list(names) for view, names in features.items()}
        self._columns: dict[str, dict[str, pa.Array]] = {}
        # Each view's user ids, ascending, with the row of each: a binary search per lookup (8 + 8
        # bytes per user, where a dict of Python ints took about 100).
        self._ids: dict[str, np.ndarray] = {}
        self._rows: dict[str, np.ndarray] = {}
        for view, table in tables.items():
            table = table.combine_chunks()
            self._columns[view] = {
                name: table.column(name).chunk(0) if table.num_rows else table.column(name)
                for name in table.column_names
            }
            ids = table.column("user_id").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            order = np.argsort(ids, kind="stable")
            self._ids[view], self._rows[view] = ids[order], order
        self._known = np.unique(np.concatenate([np.empty(0, np.int64), *self._ids.values()]))
        self._overlay: dict[tuple[str, int], ViewRow] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, offline_store_dir: Path, features: Mapping[str, Sequence[str]]) -> OfflineSnapshots:
        """Read the latest snapshot per user of every view; MissingDataError when a view has no file."""
        tables = {}
        for view, names in features.items():
            files = view_files(offline_store_dir, view)
            if not files:
                raise MissingDataError(
                    f"no offline store file for {view} under {offline_store_dir}: run `make features` first"
                )
            tables[view] = latest_rows(files, names)
            logger.info("offline fallback: %s rows of %s", tables[view].num_rows, view)
        return cls(tables, features)

    @property
    def views(self) -> list[str]:
        return list(self._features)

    @property
    def users(self) -> int:
        """How many distinct users have at least one view offline."""
        overlay = np.unique(
            np.fromiter((u for _, u in self._overlay), dtype=np.int64, count=len(self._overlay))
        )
        return len(self._known) + int((~np.isin(overlay, self._known)).sum())

    def lookup(self, user_id: int, view: str) -> ViewRow | None:
        """The user's newest row of ``view``, or None when the offline store has none."""
        overlay = self._overlay.get((view, user_id))
        if overlay is not None:
            return overlay
        ids = self._ids.get(view)
        if ids is None:
            return None
        at = int(np.searchsorted(ids, user_id))
        if at == len(ids) or ids[at] != user_id:
            return None
        row = int(self._rows[view][at])
        columns = self._columns[view]
        values = {name: columns[name][row].as_py() for name in self._features[view]}
        return columns["event_timestamp"][row].as_py(), values

    def update(self, view: str, user_id: int, event_timestamp: datetime, values: Mapping[str, Any]) -> None:
        """Record a refreshed row so the fallback serves it too (when newer than what it has)."""
        current = self.lookup(user_id, view)
        if current is not None and current[0] is not None and current[0] > event_timestamp:
            return
        with self._lock:
            self._overlay[(view, user_id)] = (event_timestamp, dict(values))
