"""Where rows appended to an offline-store file live: small parquet *parts* beside it.

The batch job writes each group whole (``offline_store/<view>.parquet``). A refresh, or Feast's
``push(..., to=PushMode.OFFLINE)``, appends the few rows it computes as a new part under
``offline_store/refreshes/<view>/`` instead of rewriting that file. Readers take the file and its
parts as one table (``source_files``); a part's row supersedes a batch row of the same user and
event time by its later ``created_timestamp``. Pure pyarrow, so any reader can use it without
importing Feast.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from churnfs.io import write_parquet_atomic

PARTS_DIR = "refreshes"
"""The folder, beside the source files, holding one sub-folder of parts per source file."""
STREAM_PARTS_DIR = "stream"
"""The folder, beside the raw tables, holding the events the stream consumer appended
(``churnfs.stream``): raw rows, never superseded by a rebuild, so ``drop_parts`` is not for them."""


def parts_dir(source_file: Path, folder: str = PARTS_DIR) -> Path:
    """Where the parts appended to ``source_file`` live: ``<folder of the file>/<folder>/<file stem>/``
    (``folder``: ``refreshes`` for the offline store, ``stream`` for the raw events)."""
    source_file = Path(source_file)
    return source_file.parent / folder / source_file.stem


def part_files(source_file: Path, folder: str = PARTS_DIR) -> list[Path]:
    """The parts appended to ``source_file``, oldest name first (names start with the as-of time)."""
    return sorted(parts_dir(source_file, folder).glob("*.parquet"))


def source_files(source_file: Path, folder: str = PARTS_DIR) -> list[Path]:
    """Every parquet file holding a source's rows: the batch file (if written), then its parts."""
    source_file = Path(source_file)
    return ([source_file] if source_file.exists() else []) + part_files(source_file, folder)


def part_name(as_of: datetime, created: datetime, label: str) -> str:
    """A part's file name: sorts by as-of time, then by when it was written; never reused."""
    as_of, created = as_of.astimezone(UTC), created.astimezone(UTC)
    return f"{as_of:%Y%m%dT%H%M%S%f}-{created:%Y%m%dT%H%M%S%f}-{label}.parquet"


def conform_to_source(table: pa.Table, source_file: Path) -> pa.Table:
    """``table`` in the source file's exact schema (column order and types), without pandas
    metadata, so DuckDB reads the file and its parts as one table; unchanged when there is no file
    yet or the columns differ (the caller's schema is then the part's)."""
    table = table.replace_schema_metadata(None)
    if Path(source_file).exists():
        schema = pq.read_schema(source_file).remove_metadata()
        if set(schema.names) <= set(table.column_names):
            table = table.select(schema.names).cast(schema)
    return table


def append_part(source_file: Path, table: pa.Table, name: str, folder: str = PARTS_DIR) -> Path:
    """Write ``table`` as a new part of ``source_file`` (atomically; an existing part is never
    replaced) and return its path."""
    path = parts_dir(source_file, folder) / name
    if path.exists():
        raise FileExistsError(f"{path} already exists: parts are never overwritten")
    write_parquet_atomic(conform_to_source(table, source_file), path)
    return path


def drop_parts(source_file: Path) -> int:
    """Remove every part appended to ``source_file``; returns how many there were. The batch job
    calls it after rewriting the file: it recomputes every user from the raw tables, which hold
    whatever a refresh read, so an older refresh must not win over it by its later
    ``created_timestamp``."""
    folder = parts_dir(source_file)
    parts = part_files(source_file)
    for part in parts:
        part.unlink()
    if folder.exists() and not any(folder.iterdir()):
        folder.rmdir()
    return len(parts)
