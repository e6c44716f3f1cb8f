"""Helpers the serving tests share (this module holds no tests): a copy of the session's trained
world served from a private redis-server, and that server's start and stop."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from churnfs.settings import Settings
from tests.conftest import start_private_redis

API_KEY = "serving-test-key"


def start_redis(workdir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A private redis-server that keeps its data across a stop and a start in the same folder."""
    return start_private_redis(workdir, port=port, persist=True)


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: Redis writes its snapshot and exits."""
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class ServedWorld:
    settings: Settings
    redis_proc: subprocess.Popen[bytes]
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
    proc, port = start_redis(redis_dir)
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
            redis_proc=proc,
            redis_port=port,
            redis_dir=redis_dir,
            users=len(ids),
            world_end=load_world_spec(settings.raw_dir).end,
            sample_users=random.Random(7).sample(ids, 20),
        )
        yield world
    finally:
        # A test may have restarted Redis: stop whichever process runs now.
        stop_redis(world.redis_proc if world is not None else proc)
