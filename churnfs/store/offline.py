"""Feast's DuckDB offline store, reading each file source together with the parts appended to it.

The batch job writes a source file whole; refreshes append small parquet parts beside it
(``churnfs.store.parts``). This store reads the file and its parts as one table wherever Feast
reads a source (historical retrieval, ``pull_latest`` and ``pull_all``), so training,
``check-consistency`` and the online store see the same rows, and Feast's joins rank a part's row
above a batch row of the same entity and event time by its later ``created_timestamp``. Feast's
offline write (``push(..., to=PushMode.OFFLINE)``) appends a part too, instead of rewriting the
whole source file as Feast's own DuckDB store does.

Plugged in through feature_store.yaml:
``offline_store: {type: churnfs.store.offline.PartsDuckDBOfflineStore}``. Feast builds this store's
config before ``feast apply`` and ``feast plan`` list the repository's files, so the config also
points that listing at one that does not walk ignored folders (``churnfs.store.repo_files``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores import duckdb as feast_duckdb
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from ibis.expr.types import Table
from pydantic import model_validator

from churnfs.store.parts import append_part, part_name, source_files


def _source_path(data_source: DataSource, repo_path: str) -> Path:
    assert isinstance(data_source, FileSource)
    return Path(FileSource.get_uri_for_file_path(repo_path, data_source.path))


_threads = threading.local()


def _connection() -> Any:
    """This thread's ibis DuckDB connection. Feast reads through ibis's default connection, one
    DuckDB connection for the whole process that refuses a second query while one runs; the bulk
    engine reads views in parallel threads."""
    con = getattr(_threads, "con", None)
    if con is None:
        con = _threads.con = ibis.duckdb.connect()
    return con


def _read_data_source(data_source: DataSource, repo_path: str) -> Table:
    """A local parquet file source and its parts as one ibis table, on this thread's connection;
    anything else (other formats, object stores): Feast's own reader."""
    if isinstance(data_source, FileSource) and "://" not in data_source.path:
        parquet = isinstance(data_source.file_format, ParquetFormat) or (
            data_source.file_format is None and data_source.path.endswith(".parquet")
        )
        if parquet:
            files = source_files(_source_path(data_source, repo_path)) or [Path(data_source.path)]
            table: Table = _connection().read_parquet([str(f) for f in files])
            return table
    return feast_duckdb._read_data_source(data_source, repo_path)


def _reader_and_staging(config: RepoConfig) -> dict[str, Any]:
    """What each of Feast's ibis retrieval functions takes besides the query: our reader (the file
    with its parts), Feast's DuckDB writer and the configured staging location."""
    return {
        "data_source_reader": _read_data_source,
        "data_source_writer": feast_duckdb._write_data_source,
        "staging_location": config.offline_store.staging_location,
        "staging_location_endpoint_override": config.offline_store.staging_location_endpoint_override,
    }


class PartsDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Options of the store (feature_store.yaml, ``offline_store:``): Feast's DuckDB options."""

    type: Literal["churnfs.store.offline.PartsDuckDBOfflineStore"] = (  # type: ignore[assignment]
        "churnfs.store.offline.PartsDuckDBOfflineStore"
    )

    @model_validator(mode="after")
    def _list_repo_files_without_ignored_folders(self) -> Self:
        # Feast validates this config (feature_store.yaml) before parse_repo lists the files to
        # import: from the repository root its own listing globs all of .venv (docs/private-apis.md).
        from churnfs.store.repo_files import install_repo_file_listing

        install_repo_file_listing()
        return self


class PartsDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store over each file source plus its appended parts; offline writes
    append a part instead of rewriting the source file."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        return pull_latest_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_reader_and_staging(config),
        )

    @staticmethod
    def get_historical_features(  # type: ignore[override]  # Feast's DuckDB store's signature
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        return get_historical_features_ibis(
            config=config,
            feature_views=feature_views,
            feature_refs=feature_refs,
            entity_df=entity_df,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            **_reader_and_staging(config),
            filter_by_created_timestamp=filter_by_created_timestamp,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return pull_all_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_reader_and_staging(config),
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Feast's offline write (``push(..., to=PushMode.OFFLINE)``): ``table`` becomes one new
        part of the view's batch source, in the source file's schema."""
        source = feature_view.batch_source
        if not isinstance(source, FileSource):
            raise ValueError(f"feature view {feature_view.name} has no file source to append to")
        path = _source_path(source, str(config.repo_path))
        if path.exists():
            expected = pq.read_schema(path).names
            if sorted(expected) != sorted(table.column_names):
                raise ValueError(
                    f"offline write to {feature_view.name}: columns {table.column_names} differ from "
                    f"the source's {expected}"
                )
        times = table.column(source.timestamp_field).cast(pa.timestamp("us", tz="UTC")).to_pylist()
        as_of = max((t for t in times if t is not None), default=datetime.now(UTC))
        append_part(path, table, part_name(as_of, datetime.now(UTC), f"push-{uuid.uuid4().hex[:8]}"))
        if progress:
            progress(table.num_rows)
