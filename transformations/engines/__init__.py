"""Feature engines: how partitions of users reach the pure feature functions, and where the
results go. Each engine provides one ``FeatureEngine`` (``base.py``):

- ``duckdb.py``: this process, all users as one partition (DuckDB and NumPy over local parquet).
- ``spark.py``: buckets of users on a Spark cluster (``SPARK_MASTER``), the same functions in
  every bucket, the results written by the same writer.

``churnfs features --engine NAME`` (or ``FEATURE_ENGINE``) picks one; the parity tests in
``tests/integration/test_spark_engine.py`` prove they compute the same rows.
"""

from __future__ import annotations

import importlib

from churnfs.errors import InvalidInputError
from churnfs.settings import Settings
from transformations.engines.base import FeatureEngine

ENGINES: dict[str, str] = {
    "duckdb": "transformations.engines.duckdb.DuckDBEngine",
    "spark": "transformations.engines.spark.SparkEngine",
}
"""Engine name -> class (imported only when chosen: PySpark is an optional extra)."""


def get_engine(name: str, settings: Settings) -> FeatureEngine:
    """The engine called ``name``, ready to run for ``settings`` (a Spark engine checks Java and
    its master here, before anything is read or written)."""
    if name not in ENGINES:
        raise InvalidInputError(f"unknown feature engine {name!r}; choose from {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].rpartition(".")
    engine: FeatureEngine = getattr(importlib.import_module(module), cls)(settings)
    return engine
