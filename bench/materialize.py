"""Benchmark: materializing the three online feature groups into Redis.

Side by side on the same offline store: plain ``feast materialize`` with Feast's defaults
(``redis`` online store, ``local`` engine) against churnfs' feature_store.yaml (the bulk engine,
churnfs/store/engine.py), both run as the ``feast`` CLI a user would type, in separate Redis
databases. Reports wall time, rows/s, peak memory, the speed-up, and Redis memory per user.

The offline store comes from the generator and the features job when they are installed, else it
is synthesised at the requested scale in the contract's format (docs/data-model.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import REPO, VENV_BIN, Row, Spread, load_average, marked_line, run_measured
from churnfs.settings import Settings
from churnfs.world import WorldSpec

SUITE = "materialize"
TOPICS = 8  # synthetic topic_vector length
EMBEDDING_DIM = 384
GENDERS = np.array(["female", "male", "other"])
COUNTRIES = np.array(["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "ES"])
DEVICES = np.array(["ios", "android", "web"])
BENCH_REDIS_DB = 14  # the baseline uses BENCH_REDIS_DB + 1


def _timestamps(value: object, n: int) -> pa.Array:
    return pa.array(np.full(n, np.datetime64(value, "us")), type=pa.timestamp("us", tz="UTC"))


def _vectors(values: np.ndarray) -> pa.Array:
    n, width = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1).astype(np.float32)))


def synthesize_offline_store(settings: Settings, users: int, seed: int = 0) -> None:
    """Write a raw world spec and an offline store of ``users`` users in the contract's format
    (random values of the right types and ranges, one row per user and as-of time)."""
    rng = np.random.default_rng(seed)
    spec = WorldSpec(users=users, seed=seed, drift=False)
    spec.save(settings.raw_dir)
    out = settings.offline_store_dir
    out.mkdir(parents=True, exist_ok=True)
    user_id = np.arange(1, users + 1, dtype=np.int64)
    inside = rng.random(users) < 0.25
    signup_offset = np.where(
        inside, rng.integers(0, spec.window_days * 86400, users), -rng.integers(0, 5 * 365 * 86400, users)
    )
    signup = np.datetime64(spec.start.replace(tzinfo=None), "s") + signup_offset.astype("timedelta64[s]")
    profile = {
        "age": rng.integers(18, 81, users),
        "gender": GENDERS[rng.integers(0, 3, users)],
        "country": COUNTRIES[rng.integers(0, 10, users)],
        "income": rng.uniform(8_000, 400_000, users),
        "device": DEVICES[rng.integers(0, 3, users)],
        "premium": rng.random(users) < 0.2,
    }
    embedding = rng.normal(0, 0.05, (users, EMBEDDING_DIM)).astype(np.float32)
    topics = rng.dirichlet(np.ones(TOPICS), users).astype(np.float32)
    writers: dict[str, pq.ParquetWriter] = {}
    embedded = np.zeros(users, dtype=bool)
    try:
        for as_of in spec.as_of_calendar(settings.snapshot_frequency_days):
            t = np.datetime64(as_of.replace(tzinfo=None), "s")
            idx = np.flatnonzero(signup < t)
            n = len(idx)
            base = {
                "user_id": pa.array(user_id[idx]),
                "event_timestamp": _timestamps(t, n),
                "created_timestamp": _timestamps(t + np.timedelta64(3600, "s"), n),
            }
            age_days = ((t - signup[idx]) // np.timedelta64(1, "D")).astype(np.int64)
            groups = {
                "user_profile_features": {
                    **{k: pa.array(v[idx]) for k, v in profile.items()},
                    "account_age_days": pa.array(age_days),
                },
                "user_activity_features": _activity(rng, n),
                "user_review_features": _reviews(rng, topics[idx]),
            }
            # Event-sourced embeddings: a row at each user's first as-of time (as the real job
            # writes for a user whose reviews then do not change).
            new = np.flatnonzero((signup < t) & ~embedded)
            embedded[new] = True
            emb_base = {
                "user_id": pa.array(user_id[new]),
                "event_timestamp": _timestamps(t, len(new)),
                "created_timestamp": _timestamps(t + np.timedelta64(3600, "s"), len(new)),
            }
            groups["user_review_embeddings"] = {**emb_base, "review_embedding": _vectors(embedding[new])}
            for group, columns in groups.items():
                table = pa.table({**base, **columns} if group != "user_review_embeddings" else columns)
                if group not in writers:
                    writers[group] = pq.ParquetWriter(
                        out / f"{group}.parquet", table.schema, compression="zstd"
                    )
                writers[group].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()
    label_rows = []
    for cutoff in spec.cutoffs():
        t = np.datetime64(cutoff.replace(tzinfo=None), "s")
        idx = np.flatnonzero(signup < t)
        label_rows.append(
            pa.table(
                {
                    "user_id": pa.array(user_id[idx]),
                    "event_timestamp": _timestamps(t, len(idx)),
                    "created_timestamp": _timestamps(t + np.timedelta64(30, "D"), len(idx)),
                    "churned": pa.array(rng.integers(0, 2, len(idx))),
                }
            )
        )
    pq.write_table(pa.concat_tables(label_rows), out / "churn_labels.parquet", compression="zstd")


def _activity(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
    total = rng.poisson(40, n)
    shares = rng.dirichlet(np.ones(6), n) * (total > 0)[:, None]
    return {
        "total_events": pa.array(total),
        "purchase_count": pa.array(rng.poisson(2, n)),
        "add_to_cart_count": pa.array(rng.poisson(4, n)),
        "session_count": pa.array(rng.poisson(8, n)),
        "avg_session_length": pa.array(rng.gamma(2, 300, n)),
        "last_active_days": pa.array(rng.exponential(5, n)),
        "categorical_event_vector": _vectors(shares),
        "events_7d": pa.array(rng.poisson(3, n)),
        "events_30d": pa.array(rng.poisson(12, n)),
        "purchases_30d": pa.array(rng.poisson(1, n)),
        "support_contacts_30d": pa.array(rng.poisson(0.3, n)),
        "activity_trend": pa.array(rng.uniform(-0.99, 0.99, n)),
        "total_spend": pa.array(rng.gamma(2, 80, n)),
        "spend_30d": pa.array(rng.gamma(1, 30, n)),
        "distinct_categories": pa.array(rng.integers(0, 12, n)),
        "mobile_share_30d": pa.array(rng.random(n)),
    }


def _reviews(rng: np.random.Generator, topics: np.ndarray) -> dict[str, pa.Array]:
    n = len(topics)
    total = rng.poisson(1.5, n)
    has = total > 0
    return {
        "has_reviews": pa.array(has),
        "total_reviews": pa.array(total),
        "avg_rating": pa.array(np.where(has, rng.uniform(1, 5, n), 0.0)),
        "avg_helpful_ratio": pa.array(np.where(has, rng.random(n), 0.0)),
        "avg_text_length": pa.array(np.where(has, rng.uniform(15, 60, n), 0.0)),
        "last_review_days": pa.array(rng.exponential(20, n)),
        "sentiment_score": pa.array(np.where(has, rng.uniform(-1, 1, n), 0.0)),
        "recent_sentiment": pa.array(np.where(has, rng.uniform(-1, 1, n), 0.0)),
        "topic_vector": _vectors(topics * has[:, None]),
    }


def _build_world(settings: Settings, users: int) -> Settings:
    try:
        from datagen import generate_world
        from transformations.job import build_features
    except ImportError:
        synthesize_offline_store(settings, users)
        return settings
    generate_world(settings, users=users, seed=42, drift=True, show_progress=False)
    build_features(settings, show_progress=False)
    return settings


def _redis_host_port() -> tuple[str, int]:
    from churnfs.store.embedded import parse_host_port

    return parse_host_port(Settings().redis_connection_string)


def redis_bytes_per_key(client: object, sample: int = 1000) -> float:
    """Mean ``MEMORY USAGE`` of ``sample`` random keys of the current database (one key per user)."""
    keys = [client.randomkey() for _ in range(sample)]  # type: ignore[attr-defined]
    sizes = [client.memory_usage(k, samples=0) or 0 for k in keys if k is not None]  # type: ignore[attr-defined]
    return float(np.mean(sizes)) if sizes else 0.0


def world_cache(users: int) -> Path:
    """Where a generated benchmark world of ``users`` users is kept between runs (gitignored)."""
    return REPO / "bench" / "results" / f"world-{users}"


def build_world(workdir: Path, users: int) -> Settings:
    """A world with an offline store at ``users`` users, reused from ``world_cache`` when an
    earlier run built it: generated by the real pipeline when it is installed, else synthesised
    in the contract's format."""
    cached = Settings(data_dir=world_cache(users))
    if (cached.offline_store_dir / "user_review_embeddings.parquet").exists():
        return cached
    built = _build_world(cached, users)
    return built


def baseline_repo(workdir: Path) -> Path:
    """A copy of the feature repository whose feature_store.yaml uses Feast's defaults
    (``redis`` online store, ``local`` engine), so the comparison is with plain Feast."""
    import yaml

    repo = workdir / "baseline_repo"
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "feature_repo", repo / "feature_repo", dirs_exist_ok=True)
    shutil.copy(REPO / ".feastignore", repo / ".feastignore")
    config = yaml.safe_load((REPO / "feature_store.yaml").read_text())
    config["online_store"] = {"type": "redis", "connection_string": "${REDIS_CONNECTION_STRING}"}
    config.pop("batch_engine", None)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return repo


def online_view_count() -> int:
    """How many feature views of ``feature_repo`` are materialized (one Redis hash field set each)."""
    from feast import FeatureView

    import feature_repo.feature_views as declared

    return sum(isinstance(v, FeatureView) and v.online for v in vars(declared).values())


IN_PROCESS = """
import sys, time
from datetime import datetime
from feast import FeatureStore
store = FeatureStore(repo_path=".")
start, end = (datetime.fromisoformat(a) for a in sys.argv[1:3])
began = time.perf_counter()
store.materialize(start, end)
print("SECONDS", time.perf_counter() - began)
"""


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    return compare(build_world(workdir, users), workdir, users, runs)


def _measure_side(
    label: str, repo_path: Path, db: int, settings: Settings, workdir: Path, window: tuple[str, str]
) -> dict[str, float]:
    """One run of one side: ``feast materialize`` as a user types it, then the same
    materialization in process (the engine alone), each in a fresh process on an empty database."""
    import redis

    host, port = _redis_host_port()
    client = redis.Redis(host=host, port=port, db=db)
    client.flushdb()
    data_dir = workdir / f"registry-{db}"
    if not data_dir.exists():
        data_dir.mkdir()
        # Both registries point at the same offline store files.
        (data_dir / "offline_store").symlink_to(settings.offline_store_dir.resolve())
        (data_dir / "raw").symlink_to(settings.raw_dir.resolve())
    env = {"DATA_DIR": str(data_dir), "REDIS_CONNECTION_STRING": f"{host}:{port},db={db}"}
    # `feast apply` globs the whole tree (.venv included) for a minute: apply in process.
    apply = "from churnfs.store import apply_repo; import churnfs.settings as s; apply_repo(s.Settings())"
    run_measured([str(VENV_BIN / "python"), "-c", apply], env={**env, "FEAST_REPO_PATH": str(repo_path)})
    measured = run_measured([str(VENV_BIN / "feast"), "materialize", *window], env=env, cwd=repo_path)
    keys = client.dbsize()
    memory = redis_bytes_per_key(client)
    client.flushdb()
    # The same materialization in process: the engines alone, without the CLI's start-up
    # (`import feast` takes about 6 s here, the same on both sides).
    timed = run_measured([str(VENV_BIN / "python"), "-c", IN_PROCESS, *window], env=env, cwd=repo_path)
    client.flushdb()
    return {
        "wall_s": measured.wall_s,
        "engine_s": float(marked_line(timed.stdout, "SECONDS")),
        "peak_mb": measured.peak_rss_mb,
        "keys": float(keys),
        "bytes_per_user": memory,
    }


def compare(settings: Settings, workdir: Path, users: int, runs: int = 3) -> list[Row]:
    """Materialize ``settings``' offline store with both configurations, side by side, ``runs``
    times each (the sides alternate, so both see the same load); medians and ranges."""
    from churnfs.store.repo import materialization_window

    start, end = materialization_window(settings)
    window = (start.isoformat(), end.isoformat())
    views = online_view_count()
    scale = f"{users:,} users"
    ours, baseline = "churnfs bulk engine", "feast default (local engine)"
    sides = ((ours, REPO, BENCH_REDIS_DB), (baseline, baseline_repo(workdir), BENCH_REDIS_DB + 1))
    measured: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in sides}
    loads = [load_average()]
    for _ in range(runs):
        for label, repo_path, db in sides:
            measured[label].append(_measure_side(label, repo_path, db, settings, workdir, window))
        loads.append(load_average())

    def spread(label: str, key: str) -> Spread:
        return Spread.of([run[key] for run in measured[label]])

    rows: list[Row] = []
    for label, _, _ in sides:
        wall, engine, peak = spread(label, "wall_s"), spread(label, "engine_s"), spread(label, "peak_mb")
        keys = {int(run["keys"]) for run in measured[label]}
        rows += [
            Row(
                SUITE,
                f"{label}: feast materialize, {views} views",
                round(wall.median, 2),
                "s",
                note=f"{scale}; {wall.as_range(unit=' s')}",
            ),
            Row(SUITE, f"{label}: rows/s per view", round(views * users / wall.median), "rows/s"),
            Row(
                SUITE,
                f"{label}: FeatureStore.materialize in process",
                round(engine.median, 2),
                "s",
                note=f"no start-up; {engine.as_range(unit=' s')}",
            ),
            Row(SUITE, f"{label}: peak RSS", round(peak.median), "MiB", note=peak.as_range(".0f")),
            Row(
                SUITE,
                f"{label}: Redis keys",
                ", ".join(str(k) for k in sorted(keys)),
                "keys",
                ok=keys == {users},
            ),
        ]
        if label == ours:
            memory = measured[label][-1]["bytes_per_user"]
            rows.append(
                Row(
                    SUITE,
                    f"Redis memory per user ({views} views)",
                    round(memory),
                    "bytes",
                    note="MEMORY USAGE, 1,000 users",
                )
            )
    ratios = [b["wall_s"] / o["wall_s"] for o, b in zip(measured[ours], measured[baseline], strict=True)]
    in_process = [
        b["engine_s"] / o["engine_s"] for o, b in zip(measured[ours], measured[baseline], strict=True)
    ]
    speedup, engines = Spread.of(ratios), Spread.of(in_process)
    rows += [
        Row(
            SUITE,
            "speed-up vs feast default",
            round(speedup.median, 2),
            "x",
            goal=">= 5",
            ok=speedup.low >= 5,
            note=f"per run, the two sides back to back; {speedup.as_range(unit='x')}",
        ),
        Row(
            SUITE,
            "speed-up vs feast default, in process",
            round(engines.median, 2),
            "x",
            note=f"the engines alone: both sides' CLI start-up left out; {engines.as_range(unit='x')}",
        ),
        Row(SUITE, "load average (1 min) before / after each run", " / ".join(f"{x:.1f}" for x in loads)),
    ]
    return rows


if __name__ == "__main__":
    import sys
    import tempfile

    scale = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_USERS", "100000"))
    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), scale):
            print(row)
