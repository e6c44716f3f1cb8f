"""Session fixtures shared by every test folder: a real Redis, a Redis Cluster and a small
generated world.

The small world (``SMALL_USERS`` users, seed 7) is generated once per session into a
temporary ``DATA_DIR``; stages that need features build them once on top of it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from churnfs.settings import Settings
from churnfs.store.redis_servers import (
    RedisClusterServers,
    RedisServer,
    free_port,
    redis_answers,
    start_redis_cluster,
    start_redis_server,
)

pytest_plugins = ["tests.fixtures.feast", "tests.fixtures.training"]
# The tests' own imports of the one helper (churnfs.store.redis_servers) go through here.
__all__ = ["free_port", "redis_answers", "start_private_redis"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMALL_USERS = 3000
SMALL_SEED = 7


def _require_redis_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"no Redis answers and no {' or '.join(missing)} binary to start one")


def start_private_redis(workdir: Path, port: int | None = None, persist: bool = False) -> RedisServer:
    """Start a throw-away redis-server on loopback (on ``port``, a free one by default); the caller
    stops it. With ``persist`` it saves a snapshot in ``workdir`` when stopped and loads it when
    started again there, like a restarted production Redis."""
    _require_redis_binaries("redis-server")
    return start_redis_server(workdir, port=port, persistence="snapshot" if persist else "none")


@pytest.fixture(scope="session")
def redis_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Feast-style connection string to a real Redis with an empty database.

    Uses the server at REDIS_CONNECTION_STRING when it answers (database TEST_REDIS_DB, default
    13, flushed first), else starts a private redis-server for the session."""
    import redis

    configured = os.environ.get("REDIS_CONNECTION_STRING", "127.0.0.1:6379")
    host, _, port = configured.split(",")[0].partition(":")
    db = int(os.environ.get("TEST_REDIS_DB", "13"))
    server = None
    if not redis_answers(host, int(port or 6379)):
        server = start_private_redis(tmp_path_factory.mktemp("redis"))
        host, port = "127.0.0.1", str(server.port)
    redis.Redis(host=host, port=int(port), db=db).flushdb()
    try:
        yield f"{host}:{port},db={db}"
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A private 3-master Redis Cluster for the session (``redis-server --cluster-enabled yes`` on
    free ports, joined by ``redis-cli --cluster create``). Its nodes keep an append-only file, so a
    node killed with SIGKILL comes back with its data when restarted."""
    _require_redis_binaries("redis-server", "redis-cli")
    cluster = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"), masters=3, persistence="aof")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for a freshly generated small world (raw tables only)."""
    from datagen import generate_world

    settings = Settings(data_dir=tmp_path_factory.mktemp("world"))
    generate_world(settings, users=SMALL_USERS, seed=SMALL_SEED, drift=True, show_progress=False)
    return settings


@pytest.fixture(scope="session")
def feature_world(small_world: Settings) -> Settings:
    """The small world with its offline store built (all feature groups, labels)."""
    from transformations.job import build_features

    build_features(small_world, show_progress=False)
    return small_world
