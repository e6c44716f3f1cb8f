"""The Spark engine and Feast's Spark offline store against the DuckDB path, on the small world.

Parity: the feature job on Spark (``local[2]``, then a standalone master and worker started as
separate processes) writes the offline store the DuckDB engine writes (same rows, keys and as-of
times, integers equal, floats within 1e-9, embeddings within 1e-6); historical retrieval
through Feast's Spark store returns the DuckDB store's training set row for row, and a model
trained on it scores the same; a materialization through Spark leaves Redis byte-identical to the
bulk engine's. Faults: no Java, an unreachable master and a failed job say so in one line and
leave the previous offline store as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnfs.settings import Settings
from churnfs.spark import (
    SparkJobError,
    StandaloneCluster,
    java_executable,
    start_standalone_cluster,
    stop_spark,
)
from tests.fixtures.parity import (
    VECTOR_TOLERANCE,
    assert_same_offline_store,
    assert_same_table,
    cache_parts,
    copy_world,
)

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[spark]')")
if java_executable() is None:
    pytest.skip("Spark needs Java 17 and none is installed (.ci/run installs it)", allow_module_level=True)

pytestmark = [pytest.mark.integration, pytest.mark.spark]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """A standalone master and one worker (2 cores), separate processes on 127.0.0.1."""
    running = start_standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), cores=2, memory="3g")
    yield running
    stop_spark()
    running.stop()


def test_spark_local_builds_the_offline_store_duckdb_builds_and_embeds_nothing_cached(
    feature_world: Settings, tmp_path: Path
):
    from transformations.job import build_features

    world = copy_world(
        feature_world, tmp_path / "w", ("embeddings", "topic_model", "onnx"), spark_master="local[2]"
    )
    parts_before = cache_parts(world)
    summary = build_features(world, engine="spark", show_progress=False)
    assert summary["engine"] == "spark"
    assert_same_offline_store(feature_world, world)
    # every review text was in the copied cache: no worker embedded (and appended) anything
    assert cache_parts(world) == parts_before


def test_spark_reads_the_streamed_event_parts_in_the_duckdb_readers_order(
    feature_world: Settings, tmp_path: Path
):
    import pyarrow.compute as pc

    from churnfs.store.parts import STREAM_PARTS_DIR, append_part
    from transformations.groups import raw_table_path
    from transformations.job import build_features

    worlds = []
    for name, engine in (("duckdb", "duckdb"), ("spark", "spark")):
        world = copy_world(feature_world, tmp_path / name, ("embeddings", "topic_model", "onnx"))
        world = world.model_copy(update={"spark_master": "local[2]"})
        events = raw_table_path(world, "event_logs")
        rows = pq.read_table(events).slice(0, 400)
        for part in range(2):  # two parts, as a stream consumer appends them: new ids, an hour later
            batch = rows.slice(part * 200, 200)
            batch = batch.set_column(0, "event_id", pc.add(batch.column("event_id"), 10**9 * (part + 1)))
            shifted = pc.add(batch.column("event_timestamp"), pa.scalar(3_600_000_000, pa.duration("us")))
            batch = batch.set_column(
                batch.schema.get_field_index("event_timestamp"), "event_timestamp", shifted
            )
            users = batch.column("user_id").to_pylist()
            users[5] = None  # an unusable row inside a part: quarantined in file order
            batch = batch.set_column(
                batch.schema.get_field_index("user_id"), "user_id", pa.array(users, pa.int64())
            )
            append_part(events, batch, f"part-{part}.parquet", STREAM_PARTS_DIR)
        build_features(world, groups=["activity"], engine=engine, show_progress=False)
        worlds.append(world)
    duckdb_world, spark_world = worlds
    for path in ("offline_store/user_activity_features.parquet", "quarantine/event_logs.parquet"):
        assert_same_table(
            pq.read_table(duckdb_world.data_dir / path), pq.read_table(spark_world.data_dir / path), path
        )
    quarantined = pq.read_table(spark_world.quarantine_dir / "event_logs.parquet")
    assert quarantined.num_rows > 2  # the generated file's bad rows and the two in the parts


def test_standalone_cluster_builds_the_same_store_and_fits_the_same_topic_model(
    feature_world: Settings, cluster: StandaloneCluster, tmp_path: Path
):
    from transformations.job import build_features

    # No topic model in either copy: DuckDB fits one in this process, the cluster's driver fits
    # one from its workers' training-period embeddings; both read the same embedding cache.
    duckdb_world = copy_world(feature_world, tmp_path / "duckdb", ("embeddings", "onnx"))
    build_features(duckdb_world, engine="duckdb", show_progress=False)
    world = copy_world(feature_world, tmp_path / "w", ("embeddings", "onnx"), spark_master=cluster.master_url)
    build_features(world, engine="spark", show_progress=False)
    assert_same_offline_store(duckdb_world, world)
    expected = np.load(duckdb_world.artifacts_dir / "topic_model" / "v1" / "centroids.npy")
    got = np.load(world.artifacts_dir / "topic_model" / "v1" / "centroids.npy")
    assert np.allclose(expected, got, rtol=0, atol=VECTOR_TOLERANCE)


def normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """A training set's rows in key order, times as UTC microseconds, vectors as float lists."""
    frame = frame.sort_values(["event_timestamp", "user_id"], ignore_index=True).copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).dt.as_unit("us")
    for name in frame.columns:
        first = frame[name].dropna().iloc[0] if frame[name].notna().any() else None
        if first is not None and not isinstance(first, str) and np.ndim(first) == 1:
            frame[name] = [np.asarray(v, dtype=np.float64).tolist() for v in frame[name]]
    return frame


def test_spark_retrieval_on_the_cluster_equals_duckdb_and_trains_the_same_model(
    feast_world: Settings, cluster: StandaloneCluster, tmp_path: Path
):
    from churnfs.store import get_store
    from churnfs.world import load_world_spec
    from training.dataset import build_training_set, load_oracle
    from training.train import fit_and_evaluate

    spec = load_world_spec(feast_world.raw_dir)
    cutoffs = [*spec.train_cutoffs(), *spec.validation_cutoffs()]
    on_spark = feast_world.model_copy(update={"offline_store": "spark", "spark_master": cluster.master_url})
    duckdb_set = build_training_set(get_store(feast_world, check_online=False), cutoffs)
    spark_set = build_training_set(get_store(on_spark, check_online=False), cutoffs)

    expected, got = normalised(duckdb_set.frame), normalised(spark_set.frame)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) > 1000
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=0, atol=1e-12)

    oracle = load_oracle(feast_world.raw_dir)
    scores = {}
    for name, training_set in (("duckdb", duckdb_set), ("spark", spark_set)):
        evaluation = fit_and_evaluate(
            training_set,
            oracle,
            spec.train_cutoffs(),
            spec.validation_cutoffs(),
            ["logistic_regression"],
            tmp_path / name,
        )
        scores[name] = evaluation.results["logistic_regression"].metrics["roc_auc"]
    assert scores["spark"] == pytest.approx(scores["duckdb"], abs=1e-12)
    assert scores["duckdb"] > 0.6


def test_materialization_through_spark_writes_the_bulk_engines_bytes(
    feast_world: Settings, cluster: StandaloneCluster, redis_connection_string: str
):
    import redis

    from churnfs.store import materialize

    # two databases of the session's server other than the session's own (which other tests use)
    address, *options = redis_connection_string.split(",")
    host, port = address.split(":")
    session_db = next((int(o[3:]) for o in options if o.startswith("db=")), 0)
    dbs = [(session_db + 1) % 16, (session_db + 2) % 16]
    bulk, on_spark = (
        feast_world.model_copy(update={"redis_connection_string": f"{address},db={db}", **extra})
        for db, extra in zip(
            dbs, ({}, {"offline_store": "spark", "spark_master": cluster.master_url}), strict=True
        )
    )
    clients: list[redis.Redis] = []
    for db, settings in zip(dbs, (bulk, on_spark), strict=True):
        client = redis.Redis(host=host, port=int(port), db=db)
        client.flushdb()
        clients.append(client)
        summary = materialize(settings)
        assert summary["rows written"] > 0
    keys = sorted(clients[0].keys())
    assert len(keys) == 3000
    assert sorted(clients[1].keys()) == keys
    differing = [k for k in keys if clients[0].hgetall(k) != clients[1].hgetall(k)]
    assert differing == []
    for client in clients:
        client.flushdb()


# --- bad input and faults ----------------------------------------------------------------------


def run_features(settings: Settings, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    churnfs = Path(sys.executable).with_name("churnfs")
    return subprocess.run(
        [str(churnfs), "features", "--engine", "spark"],
        env={**env, "DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def store_snapshot(settings: Settings) -> dict[str, bytes]:
    folders = (settings.offline_store_dir, settings.quarantine_dir)
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.iterdir())}


@pytest.fixture()
def built_world(feature_world: Settings, tmp_path: Path) -> Settings:
    """A copy of the small world with its offline store and quarantine (the previous run's)."""
    world = copy_world(feature_world, tmp_path / "w", ("embeddings", "topic_model", "onnx"))
    shutil.copytree(feature_world.offline_store_dir, world.offline_store_dir)
    shutil.copytree(feature_world.quarantine_dir, world.quarantine_dir)
    return world


def test_without_java_the_spark_engine_says_so_in_one_line_and_writes_nothing(built_world: Settings):
    before = store_snapshot(built_world)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PATH")}
    result = run_features(built_world, {**env, "PATH": str(Path(sys.executable).parent)})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Java 17" in lines[0] and "JAVA_HOME" in lines[0]
    assert store_snapshot(built_world) == before


def test_an_unreachable_master_is_one_line_naming_it_and_writes_nothing(built_world: Settings):
    from churnfs.store.redis_servers import free_port

    before = store_snapshot(built_world)
    master = f"spark://127.0.0.1:{free_port()}"
    result = run_features(built_world, {**os.environ, "SPARK_MASTER": master})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert master in lines[0] and "does not answer" in lines[0]
    assert store_snapshot(built_world) == before


def test_a_failed_spark_job_leaves_the_previous_offline_store_intact(built_world: Settings):
    from transformations.job import build_features

    before = store_snapshot(built_world)
    # a model that cannot load: the profile, activity and label groups succeed and are staged,
    # then the review group's tasks fail on the workers
    broken = built_world.model_copy(
        update={"embedding_model": str(built_world.data_dir / "no-such-model"), "spark_master": "local[2]"}
    )
    with pytest.raises(SparkJobError, match=r"the Spark job failed: .*no-such-model"):
        build_features(broken, engine="spark", show_progress=False)
    assert store_snapshot(built_world) == before
    leftovers = [p for p in built_world.data_dir.rglob("*.staged")]
    assert leftovers == []
