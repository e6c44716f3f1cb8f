"""The one settings object: paths, connections and secrets, read from the environment.

Every stage takes a ``Settings`` instead of reading the environment itself, so two worlds
can live side by side (``DATA_DIR=/tmp/a`` and ``DATA_DIR=/tmp/b``). Nothing here touches
the filesystem: directories are made by the stage that writes into them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root: where ``feature_store.yaml`` and ``feature_repo/`` live."""


class Settings(BaseSettings):
    """Configuration for every stage. Environment variable names are the field names in
    upper case (``DATA_DIR``, ``REDIS_CONNECTION_STRING``, ``MLFLOW_TRACKING_URI``, ...)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("data"), description="Root of one world's data.")
    redis_connection_string: str = Field(
        default="127.0.0.1:6379",
        description="Feast's Redis convention: host:port[,db=N][,password=...][,ssl=true]; for a "
        "cluster every node's host:port (REDIS_TYPE=redis_cluster).",
    )
    redis_type: Literal["redis", "redis_cluster"] = Field(
        default="redis",
        description="Feast's redis_type: 'redis' (one server) or 'redis_cluster' (a Redis Cluster named "
        "by REDIS_CONNECTION_STRING; no db=N there).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Defaults to an embedded SQLite store under DATA_DIR."
    )
    churnfs_api_key: SecretStr | None = Field(
        default=None, description="Required in X-API-Key by the refresh endpoint."
    )
    feast_repo_path: Path = Field(default=PROJECT_ROOT, description="Folder holding feature_store.yaml.")

    # Batch features
    snapshot_frequency_days: int = Field(default=7, ge=1, description="As-of calendar step.")
    refresh_clock: Literal["world", "wall"] = Field(
        default="world",
        description="The as-of time of a single-user refresh: 'world' (a generated world's end) or "
        "'wall' (now, for live data); either way never past the newest raw data (docs/serving.md).",
    )

    # Engines (docs/spark.md)
    feature_engine: Literal["duckdb", "spark"] = Field(
        default="duckdb",
        description="Where `churnfs features` runs the feature functions: 'duckdb' (this process) or "
        "'spark' (partitions of users on SPARK_MASTER; needs the spark extra and Java 17).",
    )
    partition_users: int = Field(
        default=0,
        ge=0,
        description="Users per partition of the DuckDB engine (ranges of user_id, run one at a time, "
        "so memory follows the partition); 0: 100,000.",
    )
    offline_store: Literal["duckdb", "spark"] = Field(
        default="duckdb",
        description="Feast's offline store for historical retrieval and materialization: 'duckdb' "
        "(the repository's parquet files) or 'spark' (Feast's Spark store over the same files).",
    )
    spark_master: str = Field(default="local[*]", description="local[N] or spark://host:port.")
    spark_conf: dict[str, str] = Field(
        default={},
        description='Extra Spark settings as JSON, e.g. SPARK_CONF=\'{"spark.executor.memory": "4g"}\'.',
    )
    spark_conf_file: Path | None = Field(
        default=None, description="A spark-defaults.conf style file ('key value' lines), read first."
    )
    spark_buckets: int = Field(
        default=0, ge=0, description="User buckets (Spark groups) of the feature job; 0: 4 per core."
    )

    # Stream (docs/stream.md): Redis Stream on the online store's Redis
    stream_key: str = Field(default="churnfs:events", description="The Redis Stream of raw events.")
    stream_group: str = Field(default="churnfs-features", description="The consumer group.")
    stream_batch_size: int = Field(default=2000, ge=1, description="Most entries in one micro-batch.")
    stream_batch_ms: int = Field(
        default=100, ge=1, description="Longest wait (ms) to fill a micro-batch once its first entry came."
    )
    stream_claim_idle_ms: int = Field(
        default=30_000,
        ge=1,
        description="A peer's entry pending this long (ms) is taken over (XAUTOCLAIM): its consumer is "
        "taken for dead.",
    )
    stream_lock_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="The write lock's lease: a consumer killed while holding it blocks the others this long.",
    )

    # NLP
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="'all-MiniLM-L6-v2' (packaged offline) or a path / sentence-transformers name.",
    )
    embedding_backend: str = Field(
        default="openvino-bf16",
        description="'openvino-bf16' (default: OpenVINO with bf16 matrix products where the CPU has "
        "native bf16, else fp32; worst cosine 0.9999 vs torch fp32), 'openvino' (fp32), 'onnx' (ONNX "
        "Runtime fp32), 'onnx-int8' (fastest, but worst cosine 0.97: fails the 0.99 bar) or 'torch' "
        "(the reference). Ignored on CUDA, where torch runs.",
    )
    embedding_batch_size: int = Field(
        default=32, ge=1, description="Texts per model call (32: fastest for OpenVINO on 2 cores)."
    )
    embedding_threads: int = Field(default=0, ge=0, description="0 means all cores.")
    embedding_device: str = Field(default="auto", description="'auto', 'cpu' or 'cuda'.")
    topic_count: Literal["auto"] | Annotated[int, Field(ge=2)] = Field(
        default="auto",
        description="Topics of the topic model (transformations/topics.py): 'auto' (default: the K of "
        "2 to 12 whose topics' top words read best on the training-period reviews, NPMI coherence "
        "times diversity, chosen when the model is fitted) or a number that forces K.",
    )
    sentiment_method: Literal["vader", "prototype", "blend", "probe"] = Field(
        default="probe",
        description="Review sentiment (transformations/sentiment.py): 'probe' (default: a logistic "
        "regression over the review's embedding and VADER score, fitted on real Amazon and movie review "
        "snippets plus hand-written review sentences; shipped fitted for all-MiniLM-L6-v2, fitted at "
        "first use for another model), 'vader' (lexicon), 'prototype' (zero-shot from the "
        "review's embedding: similarity to positive vs negative prototype sentences) or 'blend' "
        "(the mean of 'vader' and 'prototype').",
    )

    # Training (docs: README "Point in time", training/sampling.py)
    train_max_rows_per_cutoff: int = Field(
        default=100_000,
        ge=0,
        description="Label rows kept per cutoff of the training and validation periods: above it a "
        "stratified (by churned), seeded sample is drawn before the point-in-time join; the test "
        "period is scored whole. 0: no cap.",
    )
    train_sample_seed: int = Field(default=0, ge=0, description="Seed of that sample.")

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    predict_batch_limit: int = Field(default=1000, ge=1)
    predict_micro_batch: bool = Field(
        default=True,
        description="Score concurrent POST /predict/{user_id} requests together (serving/batching.py); "
        "false scores each request alone (benchmarks compare one entity per request with it).",
    )

    # Monitoring (every other rule has its documented default in monitoring/config.py)
    drift_share_threshold: float = Field(
        default=0.3, gt=0, le=1, description="Alert when this share of monitored features drifts."
    )
    monitoring_key_features: list[str] = Field(
        default=[],
        description="Alert when any one of these drifts. Empty: the champion model's most important "
        "features (MONITORING_KEY_FEATURE_COUNT of them).",
    )
    monitoring_key_feature_count: int = Field(
        default=5, ge=0, description="Key features taken from the champion's importances."
    )
    monitoring_p_value: float = Field(
        default=0.05, gt=0, lt=1, description="Family-wise level of the KS / chi-square tests (Bonferroni)."
    )
    monitoring_psi_floor: float = Field(
        default=0.1, gt=0, description="A significant column drifts only when its PSI reaches this."
    )
    monitoring_embedding_auc_threshold: float = Field(default=0.55, gt=0.5, le=1)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def offline_store_dir(self) -> Path:
        return self.data_dir / "offline_store"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def artifacts_dir(self) -> Path:
        """Versioned artifacts of the feature pipeline (topic model, embedding cache)."""
        return self.data_dir / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def prediction_log_dir(self) -> Path:
        return self.data_dir / "predictions"

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.db"

    @cached_property
    def resolved_mlflow_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"


def get_settings() -> Settings:
    """Read the settings from the environment (a new object each call: tests change the env)."""
    return Settings()
