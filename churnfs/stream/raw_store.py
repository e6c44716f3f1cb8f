"""The raw event store the stream appends to: ``raw/event_logs.parquet`` and its parts under
``raw/stream/event_logs/`` (what ``transformations.groups.read_raw_table`` reads), the ids of
every event already stored (the stream's idempotency), and the stream's quarantine
(``quarantine/stream/event_logs/``).

A part is written to a temporary file, fsynced, renamed into place and the folder fsynced: once
``append_events`` returns, the events survive a crash of the process or the machine, so the
consumer may acknowledge them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnfs.settings import Settings
from churnfs.store.parts import STREAM_PARTS_DIR, conform_to_source, part_files, part_name, parts_dir
from churnfs.world import WorldSpec
from transformations.groups import raw_table_path, validate
from transformations.stream import merge_ids
from transformations.validation import RAW_SCHEMAS, conform


def _write_durably(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` (never replacing a file) so that it survives a crash."""
    if path.exists():
        raise FileExistsError(f"{path} already exists: parts are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _event_ids(path: Path) -> np.ndarray:
    column = pq.read_table(path, columns=["event_id"]).column("event_id")
    return np.asarray(column.fill_null(-1).to_numpy(), dtype=np.int64)


class RawEventStore:
    """The ``event_logs`` table with the stream's parts, the sorted ids of its events and, given
    the world's clean users and spec, its clean events as ``validate`` returns them.

    The clean events are kept in memory, each file validated once when first read (validation
    checks each row on its own, so validating file by file gives the batch job's rows): a
    micro-batch then recomputes its users without scanning the raw files again.
    """

    def __init__(
        self, settings: Settings, users: pa.Table | None = None, spec: WorldSpec | None = None
    ) -> None:
        self.path = raw_table_path(settings, "event_logs")
        self.quarantine_path = settings.quarantine_dir / "event_logs.parquet"
        self._read: set[Path] = set()
        self._known = np.empty(0, dtype=np.int64)
        self._users, self._spec = users, spec
        self._clean: pa.Table | None = None

    @property
    def known_ids(self) -> np.ndarray:
        """The sorted ids of the events stored when ``refresh`` last ran (plus those appended since)."""
        return self._known

    def refresh(self) -> int:
        """Take in the ids of the generated file and of parts not read yet (a peer's appends);
        returns how many files were read."""
        files = [self.path] if self.path.exists() else []
        files += part_files(self.path, STREAM_PARTS_DIR)
        new = [f for f in files if f not in self._read]
        if new:
            self._known = merge_ids(self._known, np.concatenate([_event_ids(f) for f in new]))
            for path in new:
                self._take_clean(pq.read_table(path, columns=list(RAW_SCHEMAS["event_logs"])))
            self._read.update(new)
        return len(new)

    def _take_clean(self, raw: pa.Table) -> None:
        if self._users is None or self._spec is None:
            return
        clean = validate("event_logs", conform("event_logs", raw), self._users, self._spec).clean
        self._clean = clean if self._clean is None else pa.concat_tables([self._clean, clean])

    def clean_events(self, user_ids: Sequence[int]) -> pa.Table:
        """The stored clean, parsed events of ``user_ids`` (``validate``'s output)."""
        if self._clean is None:
            raise RuntimeError("the raw store was made without the world's users and spec, or not read yet")
        ids = pa.array(sorted({int(u) for u in user_ids}), type=pa.int64())
        return self._clean.filter(pc.is_in(self._clean.column("user_id"), value_set=ids))

    def append_events(
        self, events: pa.Table, newest: datetime, label: str, clean: pa.Table | None = None
    ) -> Path:
        """Append raw events (the ``event_logs`` columns) as a new part, durably, and know their
        ids. ``clean``: the same events as ``validate`` returned them, when the caller validated
        them already (else they are validated here)."""
        table = conform_to_source(events.select(list(RAW_SCHEMAS["event_logs"])), self.path)
        path = parts_dir(self.path, STREAM_PARTS_DIR) / part_name(newest, datetime.now(UTC), label)
        _write_durably(table, path)
        self._read.add(path)
        ids = np.asarray(table.column("event_id").fill_null(-1).to_numpy(), dtype=np.int64)
        self._known = merge_ids(self._known, ids)
        if clean is None or self._clean is None:
            self._take_clean(table)
        else:
            clean = clean.select(self._clean.column_names).cast(self._clean.schema)
            self._clean = pa.concat_tables([self._clean, clean])
        return path

    def append_quarantine(self, rows: pa.Table, label: str) -> Path:
        """Append quarantined entries (raw columns, ``stream_id``, ``reason``) as a new part."""
        now = datetime.now(UTC)
        path = parts_dir(self.quarantine_path, STREAM_PARTS_DIR) / part_name(now, now, label)
        _write_durably(rows.replace_schema_metadata(None), path)
        return path

    def quarantined(self) -> pa.Table | None:
        """Every entry the stream quarantined (None when there is none)."""
        files = part_files(self.quarantine_path, STREAM_PARTS_DIR)
        return pa.concat_tables([pq.read_table(f) for f in files]) if files else None
