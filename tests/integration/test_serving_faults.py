"""Redis goes away mid-run and comes back: the service keeps answering (offline fallback, never
a 5xx), says so in /health, and uses Redis again once it returns, without a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from churnfs.settings import Settings
from tests.integration.test_serving_support import (
    Load,
    ServedWorld,
    serve_over_http,
    serve_world,
    start_redis,
    stop_redis,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWorld]:
    with serve_world(trained_world, tmp_path_factory.mktemp("serving-faults")) as world:
        yield world


@pytest.fixture(scope="module")
def base_url(served: ServedWorld) -> Iterator[str]:
    """The app behind uvicorn on a real loopback socket."""
    with serve_over_http(served.settings) as url:
        yield url


def test_redis_outage_falls_back_without_errors_and_recovers_without_restart(
    served: ServedWorld, base_url: str
) -> None:
    load = Load(base_url, served.sample_users[:10])
    worker = threading.Thread(target=load.run, daemon=True)
    worker.start()
    redis_server = served.redis_server
    try:
        load.wait_for("before", 20)

        load.phase = "stopping"  # answers while Redis shuts down may come from either store
        load.wait_for("stopping", 1)  # so no request sent "before" is in flight across the stop
        stop_redis(redis_server)
        load.phase = "down"
        load.wait_for("down", 40)
        health = httpx.get(f"{base_url}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["online_store"]["ok"] is False
        assert any(reason.startswith("online store:") for reason in health.json()["reasons"])

        load.phase = "restarting"
        served.redis_server = start_redis(served.redis_dir, port=served.redis_port)
        load.phase = "after"
        load.wait_until_online("after")
    finally:
        load.stop.set()
        worker.join(timeout=30)

    statuses = {r[2] for r in load.results}
    assert statuses == {200}, f"statuses seen: {sorted(statuses)}"
    before = [r for r in load.results if r[0] == "before"]
    down = [r for r in load.results if r[0] == "down"]
    after = [r for r in load.results if r[0] == "after"]
    assert {r[3] for r in before} == {"online"}
    assert {r[3] for r in down} == {"offline"} and len(down) >= 40
    assert [r[3] for r in after[-10:]] == ["online"] * 10, "the service did not return to Redis"

    health = httpx.get(f"{base_url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["online_store"]["ok"] is True
    metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    fallbacks = [
        line
        for line in metrics.splitlines()
        if line.startswith('churnfs_feature_fallbacks_total{reason="online_store_unreachable"}')
    ]
    assert fallbacks and float(fallbacks[0].rsplit(" ", 1)[1]) >= sum(r[3] == "offline" for r in down)
