"""Feast's Spark offline store over the repository's parquet sources (``OFFLINE_STORE=spark``).

Feast's Spark store reads ``SparkSource`` only; the repository declares ``FileSource`` (the
parquet file of each view, which the DuckDB store, the bulk engine and the training checks read).
Rather than a second set of declarations, the one place that picks the store
(``churnfs.store.repo.load_repo_config``, from ``Settings.offline_store``) names this subclass,
and it hands Feast's Spark store, for each file source, an equivalent ``SparkSource``: a Spark
temporary view over the file and the parts refreshes appended to it (``churnfs.store.parts``),
the same rows the DuckDB store reads. Every join, point-in-time rule and ``pull_latest`` query is
Feast's own Spark SQL; offline writes append a part, as with the DuckDB store.

Plugged in by ``OFFLINE_STORE=spark``; the session runs on ``SPARK_MASTER`` (``churnfs.spark``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig

from churnfs.spark import start_session
from churnfs.store.offline import PartsDuckDBOfflineStore
from churnfs.store.parts import source_files


class ChurnSparkOfflineStoreConfig(SparkOfflineStoreConfig):
    """Feast's Spark store options (``spark_conf``: the session's settings, master included)."""

    type: Literal["churnfs.store.spark_offline.ChurnSparkOfflineStore"] = (  # type: ignore[assignment]
        "churnfs.store.spark_offline.ChurnSparkOfflineStore"
    )


def _session(config: RepoConfig) -> Any:
    return start_session(dict(config.offline_store.spark_conf or {}))


def spark_source(config: RepoConfig, source: DataSource) -> DataSource:
    """A Spark equivalent of a local parquet ``FileSource``: a temporary view over the file and its
    parts, with the same name, timestamps and field mapping. Other sources pass unchanged."""
    if not isinstance(source, FileSource) or "://" in source.path:
        return source
    path = Path(FileSource.get_uri_for_file_path(str(config.repo_path), source.path))
    files = [str(f) for f in source_files(path)] or [str(path)]
    view = f"churnfs_{source.name}_{hashlib.sha1('|'.join(files).encode()).hexdigest()[:12]}"
    _session(config).read.parquet(*files).createOrReplaceTempView(view)
    return SparkSource(
        name=source.name,
        table=view,
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        field_mapping=dict(source.field_mapping),
        description=source.description,
        tags=dict(source.tags),
        owner=source.owner,
    )


def _on_spark(config: RepoConfig, view: FeatureView) -> FeatureView:
    on_spark = copy.copy(view)
    if view.batch_source is not None:
        on_spark.batch_source = spark_source(config, view.batch_source)
    return on_spark


class ChurnSparkOfflineStore(SparkOfflineStore):
    """Feast's Spark offline store; file sources are read as Spark views of the file and its parts."""

    @staticmethod
    def get_historical_features(  # type: ignore[override]  # Feast's Spark store's signature
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        _session(config)  # ours, before Feast looks for an active one
        return SparkOfflineStore.get_historical_features(
            config,
            [_on_spark(config, view) for view in feature_views],
            feature_refs,
            entity_df,
            registry,
            project,
            full_feature_names,
            filter_by_created_timestamp,
            **kwargs,
        )

    @staticmethod
    def pull_latest_from_table_or_query(  # type: ignore[override]  # passes Feast's arguments on
        config: RepoConfig, data_source: DataSource, *args: Any, **kwargs: Any
    ) -> RetrievalJob:
        return SparkOfflineStore.pull_latest_from_table_or_query(
            config, spark_source(config, data_source), *args, **kwargs
        )

    @staticmethod
    def pull_all_from_table_or_query(  # type: ignore[override]  # passes Feast's arguments on
        config: RepoConfig, data_source: DataSource, *args: Any, **kwargs: Any
    ) -> RetrievalJob:
        return SparkOfflineStore.pull_all_from_table_or_query(
            config, spark_source(config, data_source), *args, **kwargs
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Append ``table`` as a part of the view's file, exactly as the DuckDB store does."""
        PartsDuckDBOfflineStore.offline_write_batch(config, feature_view, table, progress)
