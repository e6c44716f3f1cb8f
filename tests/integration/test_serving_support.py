"""Helpers the serving tests share (this module holds no tests): a copy of the session's trained
world served from a private redis-server, that server's start and stop, the app behind uvicorn on
a real socket, and a load of requests sent from a thread while a fault is injected."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import uvicorn

from churnfs.settings import Settings
from churnfs.store.redis_servers import RedisServer
from serving.app import create_app
from tests.conftest import free_port, start_private_redis

API_KEY = "serving-test-key"
LOAD_SECONDS_MAX = 90.0


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """A private redis-server that keeps its data across a stop and a start in the same folder."""
    return start_private_redis(workdir, port=port, persist=True)


def stop_redis(server: RedisServer) -> None:
    """SIGTERM: Redis writes its snapshot and exits."""
    server.stop()


@dataclass
class ServedWorld:
    settings: Settings
    redis_server: RedisServer
    redis_port: int
    redis_dir: Path
    users: int
    world_end: datetime
    sample_users: list[int]

    def delete_online(self, user_id: int) -> None:
        """Remove the user's hash from Redis (Feast's key: serialized entity key + project)."""
        import redis
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        key = (
            serialize_entity_key(
                EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=user_id)]),
                entity_key_serialization_version=3,
            )
            + b"churnfs"
        )
        assert redis.Redis(host="127.0.0.1", port=self.redis_port).delete(key) == 1


@contextmanager
def serve_world(trained: Settings, workdir: Path, **overrides: Any) -> Iterator[ServedWorld]:
    """Copy the trained world, load it into a private Redis and yield its settings."""
    from churnfs.store import apply_repo, materialize
    from churnfs.world import load_world_spec

    data_dir = workdir / "world"
    shutil.copytree(
        trained.data_dir, data_dir, ignore=shutil.ignore_patterns("online_store", "predictions", "refreshes")
    )
    redis_dir = workdir / "redis"
    server = start_redis(redis_dir)
    port = server.port
    world: ServedWorld | None = None
    try:
        settings = Settings(
            data_dir=data_dir,
            redis_connection_string=f"127.0.0.1:{port}",
            mlflow_tracking_uri=trained.resolved_mlflow_tracking_uri,
            churnfs_api_key=API_KEY,
            **overrides,
        )
        apply_repo(settings)
        materialize(settings)
        profile = pd.read_parquet(
            settings.offline_store_dir / "user_profile_features.parquet", columns=["user_id"]
        )
        ids = sorted(set(profile["user_id"].tolist()))
        world = ServedWorld(
            settings=settings,
            redis_server=server,
            redis_port=port,
            redis_dir=redis_dir,
            users=len(ids),
            world_end=load_world_spec(settings.raw_dir).end,
            sample_users=random.Random(7).sample(ids, 20),
        )
        yield world
    finally:
        # A test may have restarted Redis: stop whichever process runs now.
        stop_redis(world.redis_server if world is not None else server)


@contextmanager
def serve_over_http(settings: Settings) -> Iterator[str]:
    """The app of ``settings`` behind uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, configure_logs=False),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Load:
    """Requests sent back to back from a thread, each tagged with the phase it was sent in."""

    base_url: str
    user_ids: list[int]
    phase: str = "before"
    results: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        i = 0
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                user_id = self.user_ids[i % len(self.user_ids)]
                route = "predict" if i % 2 else "features"
                phase = self.phase
                if route == "predict":
                    response = http.post(f"/predict/{user_id}")
                else:
                    response = http.get(f"/features/{user_id}")
                source = response.json().get("source") if response.status_code == 200 else None
                self.results.append((phase, route, response.status_code, source))
                i += 1

    def count(self, phase: str) -> int:
        return sum(1 for r in self.results if r[0] == phase)

    def wait_for(self, phase: str, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.count(phase) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count(phase) >= n, f"only {self.count(phase)} responses in phase {phase}"

    def wait_until_online(self, phase: str = "after", last: int = 10, timeout: float = 30) -> None:
        """Wait until the ``last`` answers sent in ``phase`` all came from the online store (the
        test then asserts on what the whole run saw)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = [r for r in self.results[-last:] if r[0] == phase]
            if len(recent) == last and all(r[3] == "online" for r in recent):
                return
            time.sleep(0.1)
