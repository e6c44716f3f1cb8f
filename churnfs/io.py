"""Atomic writes: a reader never sees a half-written file, and a failed job leaves nothing partial."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from churnfs.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InvalidInputError(f"cannot write to {path.parent}: {exc.strerror}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(data: pd.DataFrame | pa.Table, path: Path) -> None:
    """Write a DataFrame or Arrow table to ``path`` as parquet, atomically (zstd, no pandas index)."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_text_atomic(text: str, path: Path) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class RowGroupCutter:
    """Cuts the tables it is given, in order, into row groups of exactly ``rows`` rows on
    ``writer``; ``flush`` writes what is left as a shorter row group. Between two flushes the file
    gets the row groups of one ``write_table(..., row_group_size=rows)`` of everything given, each
    written as one chunk (as a single write of one table has), while memory holds at most about
    two row groups."""

    def __init__(self, writer: pq.ParquetWriter, rows: int) -> None:
        self._writer = writer
        self._rows = rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows < self._rows:
            return
        pending = pa.concat_tables(self._pending)
        full = pending.num_rows - pending.num_rows % self._rows
        for offset in range(0, full, self._rows):
            row_group = pending.slice(offset, self._rows).combine_chunks()
            self._writer.write_table(row_group, row_group_size=self._rows)
        rest = pending.slice(full)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def flush(self) -> None:
        if self._pending_rows:
            rest = pa.concat_tables(self._pending).combine_chunks()
            self._writer.write_table(rest, row_group_size=self._rows)
        self._pending, self._pending_rows = [], 0
