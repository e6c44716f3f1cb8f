"""Session fixtures shared by every test folder: a real Redis and a small generated world.

The small world (``SMALL_USERS`` users, seed 7) is generated once per session into a
temporary ``DATA_DIR``; stages that need features build them once on top of it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from churnfs.settings import Settings

pytest_plugins = ["tests.fixtures.feast", "tests.fixtures.training"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMALL_USERS = 3000
SMALL_SEED = 7


def redis_answers(host: str, port: int) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_private_redis(
    workdir: Path, port: int | None = None, persist: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a throw-away redis-server on loopback (on ``port``, a free one by default); the caller
    terminates it. With ``persist`` it saves a snapshot in ``workdir`` when stopped and loads it
    when started again there, like a restarted production Redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no Redis answers and no redis-server binary to start one")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    save = ["--save", "3600 1", "--dbfilename", "dump.rdb"] if persist else ["--save", ""]
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            *save,
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        if redis_answers("127.0.0.1", port):
            return proc, port
        time.sleep(0.05)
    proc.terminate()
    pytest.fail(f"private redis-server did not start on port {port}")


@pytest.fixture(scope="session")
def redis_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Feast-style connection string to a real Redis with an empty database.

    Uses the server at REDIS_CONNECTION_STRING when it answers (database TEST_REDIS_DB, default
    13, flushed first), else starts a private redis-server for the session."""
    import redis

    configured = os.environ.get("REDIS_CONNECTION_STRING", "127.0.0.1:6379")
    host, _, port = configured.split(",")[0].partition(":")
    db = int(os.environ.get("TEST_REDIS_DB", "13"))
    proc = None
    if not redis_answers(host, int(port or 6379)):
        proc, private_port = start_private_redis(tmp_path_factory.mktemp("redis"))
        host, port = "127.0.0.1", str(private_port)
    redis.Redis(host=host, port=int(port), db=db).flushdb()
    try:
        yield f"{host}:{port},db={db}"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


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
