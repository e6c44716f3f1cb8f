"""The demo's serving step: start the service on a free loopback port, ask for its health and
score a few users over real HTTP, then stop it (``churnfs smoke``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import duckdb
import httpx
import uvicorn

from churnfs.errors import MissingDataError, ServiceUnavailableError
from churnfs.settings import Settings
from churnfs.store.redis_servers import free_port
from serving.app import create_app


def sample_user_ids(settings: Settings, count: int) -> list[int]:
    """``count`` users of the latest activity snapshot, the most active first (deterministic)."""
    path = settings.offline_store_dir / "user_activity_features.parquet"
    if not path.exists():
        raise MissingDataError(f"no offline store at {settings.offline_store_dir}: run `make features` first")
    rows = (
        duckdb.connect()
        .execute(
            f"""SELECT user_id FROM read_parquet('{path}')
            WHERE event_timestamp = (SELECT max(event_timestamp) FROM read_parquet('{path}'))
            ORDER BY events_30d DESC, user_id LIMIT {int(count)}"""
        )
        .fetchall()
    )
    return [int(r[0]) for r in rows]


def run_smoke(settings: Settings, users: int = 5, timeout_s: float = 120.0) -> dict[str, Any]:
    """Serve, call ``/health``, ``/predict/{id}`` for ``users`` users and one batch ``/predict``,
    stop; returns what came back. Raises ``ServiceUnavailableError`` if it never gets ready."""
    user_ids = sample_user_ids(settings, users)
    host = "127.0.0.1"
    port = free_port(host)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30.0) as client:
            health: dict[str, Any] = {}
            while time.monotonic() < deadline:
                try:
                    response = client.get("/health")
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                health = response.json()
                if response.status_code == 200:
                    break
                time.sleep(0.5)
            else:
                raise ServiceUnavailableError(f"the service never became ready: {health}")
            singles = []
            for user_id in user_ids:
                response = client.post(f"/predict/{user_id}")
                response.raise_for_status()
                singles.append(response.json())
            batch = client.post("/predict", json={"user_ids": user_ids})
            batch.raise_for_status()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return {"url": f"http://{host}:{port}", "health": health, "predictions": singles, "batch": batch.json()}
