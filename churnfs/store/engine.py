"""A batch materialization engine that bulk-writes Feast's exact Redis format.

Plugged in through feature_store.yaml (``batch_engine: type: churnfs.store.engine.RedisBulkEngine``),
so ``feast materialize`` stays the command. Feast hands it every view at once; for the views keyed
by the same entity it

1. finds the latest row per entity in ``[start, end]`` of each view's parquet file from the key
   and time columns alone (Feast's ``pull_latest_from_table_or_query`` semantics; other sources,
   files with refreshed parts appended, and every source when the offline store is Spark, go
   through the configured offline store's ``pull_latest``), and reads only the row groups that
   hold one,
2. encodes keys, values and event times a column at a time (``churnfs.store.codec``), checking each
   view's first rows byte for byte against Feast's own converter,
3. honours Feast's write rule (a row whose event time is not newer than the stored one is skipped,
   unless the online store sets ``skip_dedup``) with one Lua call per chunk of entities, and
   ``key_ttl_seconds``,
4. sends one pipelined ``HSET`` per entity with the fields of all its views (Feast keeps one hash
   per entity), reading the replies only when it needs them (``churnfs.store.resp``: one pipeline
   to a server; on a Redis Cluster one per master, each key sent to its slot's master and the
   write rule checked one script call per hash slot).

Anything it does not handle (another online store, Redis Sentinel, field mappings, composite or
non-int64 keys, transformations) goes to Feast's local engine unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureView
from feast.data_format import ParquetFormat
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.type_map import python_values_to_proto_values
from feast.types import Int64
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field

from churnfs.store import codec
from churnfs.store.parts import part_files
from churnfs.store.resp import ClusterWriter, ServerWriter, Ticket

Writer = ServerWriter | ClusterWriter

logger = logging.getLogger(__name__)


class RedisBulkEngineConfig(FeastConfigBaseModel):
    """Options of the bulk engine (feature_store.yaml, ``batch_engine:``)."""

    type: Literal["churnfs.store.engine.RedisBulkEngine"] = "churnfs.store.engine.RedisBulkEngine"
    chunk_rows: int = Field(
        default=5_000, gt=0, description="Users encoded and sent per chunk (one write-rule check each)."
    )
    verify_rows: int = Field(default=32, ge=0, description="Rows checked against Feast's converter.")


class RedisBulkEngine(LocalComputeEngine):
    """Feast's local engine, with a vectorised, pipelined writer for Redis."""

    def __init__(self, *, chunk_rows: int = 5_000, verify_rows: int = 32, **kwargs: Any) -> None:
        kwargs.pop("type", None)
        super().__init__(**kwargs)
        self.chunk_rows = chunk_rows
        self.verify_rows = verify_rows
        self.rows_written: dict[str, int] = {}
        self._verified: set[str] = set()  # views whose first rows were checked against Feast

    @property
    def supports_batch(self) -> bool:
        """Feast hands all views' tasks to ``materialize`` at once (its documented batch path)."""
        return True

    def materialize(
        self, registry: BaseRegistry, tasks: MaterializationTask | list[MaterializationTask], **kwargs: Any
    ) -> list[Any]:
        """Views keyed by the same entity are written together (``_write_views``); views this
        engine does not handle go to Feast's local engine. Jobs come back in the tasks' order."""
        if isinstance(tasks, MaterializationTask):
            tasks = [tasks]
        jobs: dict[int, Any] = {}
        groups: list[list[int]] = []  # same join key, each view once
        for i, task in enumerate(tasks):
            view = task.feature_view
            reason = self._unsupported(view, task)
            if reason:
                logger.info("%s: Feast's local engine (%s)", view.name, reason)
                jobs[i] = super()._materialize_one(registry, task, **kwargs)
                continue
            for group in groups:
                first = tasks[group[0]].feature_view
                if first.entity_columns[0].name == view.entity_columns[0].name and view.name not in {
                    tasks[j].feature_view.name for j in group
                }:
                    group.append(i)
                    break
            else:
                groups.append([i])
        for group in groups:
            jobs.update(zip(group, self._write_views([tasks[i] for i in group]), strict=True))
        return [jobs[i] for i in range(len(tasks))]

    def _unsupported(self, view: FeatureView, task: MaterializationTask) -> str | None:
        config = self.repo_config.online_store
        if not isinstance(self.online_store, RedisOnlineStore) or not isinstance(
            config, RedisOnlineStoreConfig
        ):
            return "online store is not Redis"
        if config.redis_type not in (RedisType.redis, RedisType.redis_cluster):
            return "Redis Sentinel"
        if self.repo_config.entity_key_serialization_version != 3:
            return "entity key serialization version is not 3"
        if task.disable_event_timestamp or not task.only_latest:
            return "not a latest-value materialization"
        if getattr(view, "feature_transformation", None) or getattr(view, "aggregations", None):
            return "view has a transformation"
        source = view.batch_source
        if not isinstance(source, FileSource) or source.field_mapping:
            return "source is not a plain FileSource"
        keys = view.entity_columns
        if len(keys) != 1 or keys[0].dtype != Int64:
            return "entity key is not a single Int64"
        return None

    def _read_latest(self, task: MaterializationTask) -> LatestRows | pa.Table:
        view = task.feature_view
        source = view.batch_source
        assert isinstance(source, FileSource)
        path = self._parquet_file(task)
        if path is not None:
            return LatestRows.plan(
                path,
                join_key=view.entity_columns[0].name,
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column or None,
                columns=[f.name for f in view.features],
                start=task.start_time,
                end=task.end_time,
            )
        job = self.offline_store.pull_latest_from_table_or_query(
            config=self.repo_config,
            data_source=source,
            join_key_columns=[view.entity_columns[0].name],
            feature_name_columns=[f.name for f in view.features],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column,
            start_date=task.start_time,
            end_date=task.end_time,
        )
        return job.to_arrow()

    def _parquet_file(self, task: MaterializationTask) -> Path | None:
        """The view's source as one local parquet file, or None (read through the offline store,
        which also reads the parts refreshes appended to the file: ``churnfs.store.parts``)."""
        source = task.feature_view.batch_source
        assert isinstance(source, FileSource)
        path = Path(FileSource.get_uri_for_file_path(self.repo_config.repo_path, source.path))
        if (
            not self.offline_store_is_spark()  # OFFLINE_STORE=spark: Spark finds the latest rows
            and path.is_file()
            and (source.file_format is None or isinstance(source.file_format, ParquetFormat))
            and not part_files(path)
        ):
            return path
        return None

    def offline_store_is_spark(self) -> bool:
        """Is the offline store Feast's Spark store (``churnfs.store.spark_offline``)?"""
        return str(getattr(self.repo_config.offline_store, "type", "")).endswith("SparkOfflineStore")

    def _row_bytes(self, task: MaterializationTask) -> float:
        """About how many bytes a row of the view's features holds, decoded (parquet metadata);
        0 when the source is not a local parquet file."""
        path = self._parquet_file(task)
        return (
            0.0
            if path is None
            else row_bytes(pq.ParquetFile(path), [f.name for f in task.feature_view.features])
        )

    def _write_views(self, tasks: list[MaterializationTask]) -> list[LocalMaterializationJob]:
        job_ids = [f"{t.feature_view.name}-{t.start_time}-{t.end_time}" for t in tasks]
        try:
            self._write_joined(tasks)
        except Exception as exc:  # reported through the jobs, as Feast's engines do
            return [
                LocalMaterializationJob(job_id=j, status=MaterializationJobStatus.ERROR, error=exc)
                for j in job_ids
            ]
        return [LocalMaterializationJob(job_id=j, status=MaterializationJobStatus.SUCCEEDED) for j in job_ids]

    def _write_joined(self, tasks: list[MaterializationTask]) -> None:
        """Write views that share an entity key, one ``HSET`` per entity with the fields of every
        view that has a newer row for it. Feast keeps one Redis hash per entity, so this is the
        end state of one view after another, in one command per entity instead of one per view
        and without Redis converting each hash's encoding as it grows.

        The view with the widest rows (the review embeddings) drives: its latest rows are
        read a row group at a time, in file order, and the other views' rows for the same
        entities (read whole, in parallel: Parquet decoding releases the GIL) join them; entities
        the driver lacks follow. So the large view is never held whole in memory, and Redis
        applies one chunk while the next is decoded and encoded."""
        config = self.repo_config.online_store
        assert isinstance(self.online_store, RedisOnlineStore)
        assert isinstance(config, RedisOnlineStoreConfig)
        started = time.perf_counter()
        # Feast creates its Redis client lazily and not thread-safely: create it before the threads.
        client = self.online_store._get_client(config)
        # The driver's row groups start decoding as soon as it is planned, while each other view
        # is planned and read in a thread of its own.
        widths = [self._row_bytes(task) for task in tasks]
        driver = int(np.argmax(widths)) if max(widths) > 0 else None
        with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="materialize") as threads:
            started_driver = threads.submit(self._start_driver, tasks[driver]) if driver is not None else None
            others = {i: threads.submit(self._read_view, task) for i, task in enumerate(tasks) if i != driver}
            driver_rows, batches = started_driver.result() if started_driver is not None else (0, None)
            try:
                views = {i: future.result() for i, future in others.items()}
            except BaseException:
                if batches is not None:
                    batches.close()
                raise
        read_s = time.perf_counter() - started
        totals = {i: driver_rows if i == driver else views[i].table.num_rows for i in range(len(tasks))}
        progress = {i: t.tqdm_builder(totals[i]) if t.tqdm_builder else None for i, t in enumerate(tasks)}
        counts = {i: [0, 0] for i in range(len(tasks))}  # rows handled, rows written
        writer: Writer | None = None
        failed = False
        try:
            cluster = config.redis_type == RedisType.redis_cluster
            writer = ClusterWriter(client) if cluster else ServerWriter(client)
            # Redis checks chunk i+1's stored event times before it applies chunk i's writes, so
            # encoding never waits for those writes (the keys of two chunks never overlap).
            chunks = self._chunks(tasks, driver, batches, views)
            upcoming = next(chunks, None)
            check = self._send_check(writer, upcoming)
            while upcoming is not None:
                keys, pieces = upcoming
                parts = self._encode_chunk(keys, pieces, counts, progress)
                upcoming = next(chunks, None)
                next_check = self._send_check(writer, upcoming)
                if check is not None:
                    parts = drop_stale(writer.stored(check[0]), parts, check[1])
                self._send_writes(writer, keys, parts, counts)
                check = next_check
            writer.drain()
        except BaseException:
            failed = True
            raise
        finally:
            if writer is not None:
                writer.close(failed)
            if batches is not None:
                batches.close()
            for bar in progress.values():
                if bar is not None:
                    bar.close()
        for i, task in enumerate(tasks):
            self.rows_written[task.feature_view.name] = counts[i][1]
            logger.info("%s: %d of %d rows written", task.feature_view.name, counts[i][1], counts[i][0])
        logger.info(
            "%d views written together in %.2f s (%.2f s before the first write)",
            len(tasks),
            time.perf_counter() - started,
            read_s,
        )

    def _start_driver(self, task: MaterializationTask) -> tuple[int, _Prefetch]:
        plan = self._read_latest(task)
        assert isinstance(plan, LatestRows)
        return plan.num_rows, _Prefetch(plan.batches(self.chunk_rows), depth=8)

    def _read_view(self, task: MaterializationTask) -> _ViewRows:
        return _ViewRows.read(task.feature_view, self._read_latest(task))

    def _chunks(
        self,
        tasks: list[MaterializationTask],
        driver: int | None,
        batches: Iterable[pa.Table] | None,
        views: dict[int, _ViewRows],
    ) -> Iterator[tuple[np.ndarray, dict[int, _Piece]]]:
        """Chunks of entities as (their Redis keys, each view's rows for them): the driver's rows
        in file order with the other views' rows of the same entities, then the entities only
        other views have."""
        join_key = tasks[0].feature_view.entity_columns[0].name
        project = self.repo_config.project
        if driver is not None and batches is not None:
            head = tasks[driver].feature_view
            for rows in batches:
                entities = rows.column(join_key).to_numpy(zero_copy_only=False).astype(np.int64)
                pieces = {driver: _Piece(head, rows, np.arange(len(entities)))}
                pieces |= {i: view.gather(entities) for i, view in views.items()}
                yield codec.entity_keys_int64(entities, join_key, project), pieces
        leftover = [view.entities[~view.covered] for view in views.values()]
        entities = np.unique(np.concatenate(leftover)) if leftover else np.empty(0, np.int64)
        for offset in range(0, len(entities), self.chunk_rows):
            chunk = entities[offset : offset + self.chunk_rows]
            pieces = {i: view.gather(chunk) for i, view in views.items()}
            yield codec.entity_keys_int64(chunk, join_key, project), pieces

    def _send_check(
        self, writer: Writer, chunk: tuple[np.ndarray, dict[int, _Piece]] | None
    ) -> tuple[Ticket, list[int]] | None:
        """Ask for the stored event times of a chunk's views (unless ``skip_dedup``): the reply's
        index and the views (task indices) in the order of their fields."""
        config = self.repo_config.online_store
        assert isinstance(config, RedisOnlineStoreConfig)
        if chunk is None or config.skip_dedup:
            return None
        keys, pieces = chunk
        checked = [i for i, piece in pieces.items() if len(piece.positions)]
        fields = [codec.timestamp_field(pieces[i].view.name) for i in checked]
        return writer.send_check(keys, fields), checked

    def _encode_chunk(
        self,
        keys: np.ndarray,
        pieces: dict[int, _Piece],
        counts: dict[int, list[int]],
        progress: dict[int, Any],
    ) -> list[EncodedPart]:
        parts: list[EncodedPart] = []
        for i, piece in pieces.items():
            counts[i][0] += len(piece.positions)
            if progress[i] is not None:
                progress[i].update(len(piece.positions))
            if len(piece.positions):
                fields, cells, nanos = self._encode_rows(piece.view, piece.rows, keys[piece.positions])
                parts.append(EncodedPart(i, piece.positions, fields, cells, nanos))
        return parts

    def _send_writes(
        self, writer: Writer, keys: np.ndarray, parts: list[EncodedPart], counts: dict[int, list[int]]
    ) -> None:
        config = self.repo_config.online_store
        assert isinstance(config, RedisOnlineStoreConfig)
        for part, written in zip(parts, send_writes(writer, config, keys, parts), strict=True):
            counts[part.index][1] += written

    def _encode_rows(
        self, view: FeatureView, rows: pa.Table, keys: np.ndarray
    ) -> tuple[list[bytes], list[codec.Cells], np.ndarray]:
        verify = 0 if view.name in self._verified else self.verify_rows
        encoded = encode_view_rows(view, self.repo_config.project, rows, keys, verify)
        self._verified.add(view.name)
        return encoded


def send_writes(
    writer: Writer, config: RedisOnlineStoreConfig, keys: np.ndarray, parts: Sequence[EncodedPart]
) -> list[int]:
    """One HSET (and EXPIRE, with a TTL) per key with the fields of every part that has a row for
    it; returns how many rows of each part were sent."""
    if not parts:
        return []
    n = keys.shape[0]
    if all(len(part.positions) == n and part.keep is None for part in parts):
        # Every view has a row to write for every key: one matrix of all their fields.
        fields = [field for part in parts for field in part.fields]
        commands = codec.hset_commands(keys, fields, [cell for part in parts for cell in part.cells])
        present = np.arange(n)
    else:
        rows = [part.arguments() for part in parts]
        commands = codec.joined_hset_commands(keys, rows)
        present = np.unique(np.concatenate([row.positions for row in rows]))
    if config.key_ttl_seconds and commands:
        expires = codec.expire_commands(keys[present], config.key_ttl_seconds)
        commands = [c for pair in zip(commands, expires, strict=True) for c in pair]
        present = np.repeat(present, 2)
    writer.send(keys, present, commands)
    return [len(part.positions) if part.keep is None else int(part.keep.sum()) for part in parts]


def encode_view_rows(
    view: FeatureView, project: str, rows: pa.Table, keys: np.ndarray, verify_rows: int = 0
) -> tuple[list[bytes], list[codec.Cells], np.ndarray]:
    """A view's fields and encoded values of ``rows`` (the event time last) and their event times
    in ns; with ``verify_rows``, that many first rows are checked byte for byte against Feast's
    converter (AssertionError on a difference)."""
    source = view.batch_source
    assert source is not None
    cells = {f.name: _encode_column(rows.column(f.name), f.dtype) for f in view.features}
    times = rows.column(source.timestamp_field)
    ts_cells = codec.timestamp_cells(times)
    if verify_rows:
        timestamps = ts_cells.objects or []
        codec.verify_against_feast(view, project, rows, keys, cells, timestamps, verify_rows)
    fields = [codec.field_key(view.name, f.name) for f in view.features]
    fields.append(codec.timestamp_field(view.name))
    values = [cells[f.name] for f in view.features] + [ts_cells]
    micros = times.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return fields, values, micros * 1000


@dataclass(frozen=True)
class _Piece:
    """One view's rows of a chunk and the positions of their entities in it (ascending)."""

    view: FeatureView
    rows: pa.Table
    positions: np.ndarray


@dataclass(frozen=True)
class EncodedPart:
    """One view's rows of a chunk, encoded, and which of them to write (``None``: all)."""

    index: int  # of the view's task
    positions: np.ndarray  # of the rows' keys in the chunk, ascending
    fields: list[bytes]
    cells: list[codec.Cells]
    event_nanos: np.ndarray
    keep: np.ndarray | None = None

    def arguments(self) -> codec.RowArguments:
        """Each row to write as HSET arguments."""
        rows = codec.field_value_arguments(len(self.positions), self.fields, self.cells)
        positions = self.positions
        if self.keep is not None:
            rows = [row for row, kept in zip(rows, self.keep.tolist(), strict=True) if kept]
            positions = positions[self.keep]
        return codec.RowArguments(positions, rows, 2 * len(self.fields))


def drop_stale(stored: list[Any], parts: list[EncodedPart], checked: list[int]) -> list[EncodedPart]:
    """Feast's rule: write a view's row only if its event time is after the stored one (or
    nothing, or the epoch, is stored). ``stored`` is the reply of ``STORED_EVENT_TIMES`` for the
    ``_ts`` fields of the views ``checked``."""
    if not stored:
        return parts
    by_view = {part.index: k for k, part in enumerate(parts)}
    keep = [np.ones(len(part.event_nanos), dtype=bool) for part in parts]
    for key_index, field_index, value in zip(stored[0::3], stored[1::3], stored[2::3], strict=True):
        k = by_view[checked[field_index]]
        row = int(np.searchsorted(parts[k].positions, key_index))
        ts = Timestamp()
        ts.ParseFromString(value)
        stored_nanos = ts.seconds * 1_000_000_000 + ts.nanos
        keep[k][row] = not stored_nanos or parts[k].event_nanos[row] > stored_nanos
    return [
        part if kept.all() else dataclasses.replace(part, keep=kept)
        for part, kept in zip(parts, keep, strict=True)
        if kept.any()
    ]


@dataclass
class _ViewRows:
    """A view's latest rows ordered by entity, and which of them chunks have taken."""

    view: FeatureView
    table: pa.Table
    entities: np.ndarray
    covered: np.ndarray

    @classmethod
    def read(cls, view: FeatureView, latest: LatestRows | pa.Table) -> _ViewRows:
        table = latest.read() if isinstance(latest, LatestRows) else latest
        entities = table.column(view.entity_columns[0].name).to_numpy(zero_copy_only=False).astype(np.int64)
        if len(entities) > 1 and not np.all(entities[1:] > entities[:-1]):
            order = np.argsort(entities, kind="stable")
            table, entities = table.take(pa.array(order)), entities[order]
        return cls(view, table, entities, np.zeros(len(entities), dtype=bool))

    def gather(self, entities: np.ndarray) -> _Piece:
        """This view's rows for ``entities`` and the (ascending) positions of those entities."""
        if not len(self.entities):
            return _Piece(self.view, self.table, np.empty(0, dtype=np.int64))
        index = np.minimum(np.searchsorted(self.entities, entities), len(self.entities) - 1)
        present = self.entities[index] == entities
        rows = index[present]
        self.covered[rows] = True
        return _Piece(self.view, self.table.take(pa.array(rows)), np.flatnonzero(present))


class _Prefetch:
    """The items of an iterator, produced by a background thread from construction on, at most
    ``depth`` ahead of the consumer (Parquet decoding releases the GIL)."""

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="materialize-read", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer
            self._put(_Failure(exc))

    def __iter__(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not self._END:
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop producing (the consumer may have stopped early) and wait for the thread."""
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class _Failure:
    error: BaseException


@dataclass(frozen=True)
class LatestRows:
    """The rows of one parquet file that hold each entity's latest value in a window, found from
    the key and time columns alone, before any feature column is read."""

    parquet: pq.ParquetFile
    columns: list[str]  # key, time and feature columns, in the order returned
    rows: np.ndarray  # row numbers in the file, ordered by entity

    @classmethod
    def plan(
        cls,
        path: Path,
        join_key: str,
        timestamp_field: str,
        created_timestamp_column: str | None,
        columns: Sequence[str],
        start: datetime,
        end: datetime,
    ) -> LatestRows:
        """The latest row per entity with ``start <= event time <= end`` (ties on the event time
        broken by the created time), as Feast's ``pull_latest_from_table_or_query``.

        When the file's row groups cover disjoint spans of event time, or one instant for
        disjoint ranges of keys (the offline store's snapshots: each as-of time in row groups of
        at most 65,536 users), they are read newest first, keys and times
        only, one at a time, and an entity's first sighting is its latest row: memory holds one
        row group's keys, not the whole file's (26 as-of times of a million users are 26 million
        rows). Otherwise the key and time columns of the whole file are sorted at once."""
        parquet = pq.ParquetFile(path)
        time_columns = [timestamp_field] + ([created_timestamp_column] if created_timestamp_column else [])
        lo = int(pd.Timestamp(start).tz_convert("UTC").value // 1000)
        hi = int(pd.Timestamp(end).tz_convert("UTC").value // 1000)
        read = [join_key, *time_columns]
        spans = _time_spans(parquet, timestamp_field, join_key)
        if spans is None:
            latest = _latest_in(parquet.read(columns=read), join_key, time_columns, lo, hi)
            rows = latest[1]
        else:
            starts = np.concatenate(
                [
                    [0],
                    np.cumsum(
                        [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
                    ),
                ]
            )
            found_entities: list[np.ndarray] = []
            found_rows: list[np.ndarray] = []
            seen = _Seen()
            for group, first, last in sorted(spans, key=lambda span: span[1], reverse=True):
                if last < lo or first > hi:
                    continue
                entity, row = _latest_in(
                    parquet.read_row_group(group, columns=read), join_key, time_columns, lo, hi
                )
                new = seen.add(entity)
                found_entities.append(entity[new])
                found_rows.append(row[new] + starts[group])
            entities = np.concatenate(found_entities) if found_entities else np.empty(0, dtype=np.int64)
            rows = np.concatenate(found_rows) if found_rows else np.empty(0, dtype=np.int64)
            rows = rows[np.argsort(entities, kind="stable")]
        return cls(parquet, [join_key, *time_columns, *columns], rows)

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def _groups(self) -> tuple[np.ndarray, np.ndarray]:
        metadata = self.parquet.metadata
        group_rows = np.array([metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)])
        return group_rows, np.cumsum(group_rows)

    def read(self) -> pa.Table:
        """The chosen rows, ordered by entity, reading only the row groups that hold one
        (snapshots are written in time order: mostly the last ones) and copying rows only when
        they are not one contiguous run already."""
        if not len(self.rows):
            return self.parquet.schema_arrow.empty_table().select(self.columns)
        group_rows, group_end = self._groups()
        group_of = np.searchsorted(group_end, self.rows, side="right")
        groups = np.unique(group_of)
        table = self.parquet.read_row_groups(groups.tolist(), columns=self.columns)
        # Position of each chosen row inside the concatenation of the groups read.
        read_start = np.cumsum(np.concatenate([[0], group_rows[groups][:-1]]))
        first_row = group_end[group_of] - group_rows[group_of]
        position = self.rows - first_row + read_start[np.searchsorted(groups, group_of)]
        if np.all(np.diff(position) == 1):
            return table.slice(int(position[0]), len(position))  # one snapshot, in entity order
        return table.take(pa.array(position))

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        """The chosen rows in file order, at most ``max_rows`` per table, one row group read at a
        time (so memory holds one row group, not the whole view)."""
        group_rows, group_end = self._groups()
        chosen = np.sort(self.rows)
        bounds = np.searchsorted(chosen, np.concatenate([[0], group_end]))
        for group in range(len(group_rows)):
            rows = chosen[bounds[group] : bounds[group + 1]] - (group_end[group] - group_rows[group])
            if not len(rows):
                continue
            table = self.parquet.read_row_group(group, columns=self.columns)
            if rows[-1] - rows[0] == len(rows) - 1:
                picked = table.slice(int(rows[0]), len(rows))  # contiguous (one snapshot): no copy
            else:
                picked = table.take(pa.array(rows))
            for offset in range(0, picked.num_rows, max_rows):
                yield picked.slice(offset, max_rows)


class _Seen:
    """The entities met so far: a bitmap over small non-negative ids (user ids), else a sorted
    array."""

    BITMAP_LIMIT = 1 << 27  # ids below this: at most 128 MB of flags

    def __init__(self) -> None:
        self._flags = np.zeros(0, dtype=bool)
        self._sorted = np.empty(0, dtype=np.int64)

    def add(self, entities: np.ndarray) -> np.ndarray:
        """Which of ``entities`` (distinct) were not met before; they are met from now on."""
        if not len(entities):
            return np.zeros(0, dtype=bool)
        if not len(self._sorted) and entities.min() >= 0 and entities.max() < self.BITMAP_LIMIT:
            if entities.max() >= len(self._flags):
                grown = np.zeros(max(int(entities.max()) + 1, 2 * len(self._flags)), dtype=bool)
                grown[: len(self._flags)] = self._flags
                self._flags = grown
            new = ~self._flags[entities]
            self._flags[entities[new]] = True
            return new
        if len(self._flags):  # ids outside the bitmap: move what it holds into the sorted array
            self._sorted, self._flags = np.flatnonzero(self._flags).astype(np.int64), np.zeros(0, dtype=bool)
        index = np.minimum(np.searchsorted(self._sorted, entities), max(len(self._sorted) - 1, 0))
        new = ~(self._sorted[index] == entities) if len(self._sorted) else np.ones(len(entities), dtype=bool)
        self._sorted = np.union1d(self._sorted, entities[new])
        return new


def _latest_in(
    keys: pa.Table, join_key: str, time_columns: list[str], lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each entity's latest row of ``keys`` with ``lo <= event time <= hi`` (ties broken by the
    created time): the entities, ascending, and their row numbers in ``keys``."""

    def micros(name: str) -> np.ndarray:
        column = keys.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return column.fill_null(np.iinfo(np.int64).min).to_numpy()

    event = micros(time_columns[0])
    inside = np.flatnonzero((event >= lo) & (event <= hi))
    entity = keys.column(join_key).to_numpy()[inside]
    sort_keys = [event[inside], entity]
    if len(time_columns) > 1:
        sort_keys.insert(0, micros(time_columns[1])[inside])
    order = np.lexsort(sort_keys)  # by entity, then event time, then created time
    ranked = inside[order]
    sorted_entity = entity[order]
    last = np.ones(len(ranked), dtype=bool)
    last[:-1] = sorted_entity[1:] != sorted_entity[:-1]
    return sorted_entity[last].astype(np.int64), ranked[last]


def _time_spans(
    parquet: pq.ParquetFile, timestamp_field: str, join_key: str
) -> list[tuple[int, int, int]] | None:
    """Each row group's (index, first, last) event time in microseconds, from the footer's
    statistics, when no entity can have rows of one time in two groups, nor a newer row in an
    older group: the groups' spans are disjoint, except that groups of one single instant (an
    as-of time cut into ranges of users) may share it if their key ranges are disjoint. None
    otherwise, or when a group lacks statistics (the whole file is then sorted at once)."""
    metadata = parquet.metadata
    spans = []
    keys = []
    for group in range(metadata.num_row_groups):
        time_range = _column_range(metadata.row_group(group), timestamp_field)
        if time_range is None:
            return None
        bounds = []
        for value in time_range:
            stamp = pd.Timestamp(value)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            bounds.append(int(stamp.value // 1000))
        spans.append((group, bounds[0], bounds[1]))
        keys.append(_column_range(metadata.row_group(group), join_key))
    ordered = sorted(spans, key=lambda span: (span[1], span[2]))
    for earlier, later in itertools.pairwise(ordered):
        if earlier[2] < later[1]:
            continue
        if not earlier[1] == earlier[2] == later[1] == later[2]:
            return None
    for instant in {first for _, first, last in spans if first == last}:
        ranges = [keys[g] for g, first, last in spans if first == last == instant]
        if len(ranges) < 2:
            continue
        if any(r is None for r in ranges):
            return None
        ordered_keys = sorted((r[0], r[1]) for r in ranges if r is not None)
        if any(a[1] >= b[0] for a, b in itertools.pairwise(ordered_keys)):
            return None
    return spans


def _column_range(row_group: pq.RowGroupMetaData, name: str) -> tuple[Any, Any] | None:
    """A row group's (min, max) of column ``name`` from its statistics, or None without them."""
    columns = (row_group.column(i) for i in range(row_group.num_columns))
    column = next((c for c in columns if c.path_in_schema == name), None)
    stats = column.statistics if column is not None else None
    if stats is None or not stats.has_min_max:
        return None
    return stats.min, stats.max


def row_bytes(parquet: pq.ParquetFile, columns: Sequence[str]) -> float:
    """Decoded bytes per row of ``columns`` of a parquet file, from its metadata."""
    metadata = parquet.metadata
    wanted = set(columns)
    size = sum(
        column.total_uncompressed_size
        for g in range(metadata.num_row_groups)
        for column in (metadata.row_group(g).column(c) for c in range(metadata.num_columns))
        if column.path_in_schema.split(".")[0] in wanted
    )
    return size / max(metadata.num_rows, 1)


def _encode_column(column: pa.ChunkedArray, dtype: object) -> codec.Cells:
    try:
        return codec.encode_values(column, dtype)
    except codec.UnsupportedColumnError:
        values = column.to_numpy(zero_copy_only=False)
        protos = python_values_to_proto_values(values, dtype.to_value_type())  # type: ignore[attr-defined]
        return codec.Cells(objects=[p.SerializeToString() for p in protos])
