"""Redis goes away mid-run and comes back: the service keeps answering (offline fallback, never
a 5xx), says so in /health, and uses Redis again once it returns, without a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from churnfs.settings import Settings
from serving.app import create_app
from tests.conftest import free_port
from tests.integration.test_serving_support import (
    ServedWorld,
    serve_world,
    start_redis,
    stop_redis,
)

pytestmark = pytest.mark.integration

LOAD_SECONDS_MAX = 90.0


@pytest.fixture(scope="module")
def served(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWorld]:
    with serve_world(trained_world, tmp_path_factory.mktemp("serving-faults")) as world:
        yield world


@pytest.fixture(scope="module")
def base_url(served: ServedWorld) -> Iterator[str]:
    """The app behind uvicorn on a real loopback socket."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(served.settings, configure_logs=False),
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
    yield f"http://127.0.0.1:{port}"
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


def test_redis_outage_falls_back_without_errors_and_recovers_without_restart(
    served: ServedWorld, base_url: str
) -> None:
    load = Load(base_url, served.sample_users[:10])
    worker = threading.Thread(target=load.run, daemon=True)
    worker.start()
    redis_proc = served.redis_proc
    try:
        load.wait_for("before", 20)

        load.phase = "stopping"  # answers while Redis shuts down may come from either store
        stop_redis(redis_proc)
        load.phase = "down"
        load.wait_for("down", 40)
        health = httpx.get(f"{base_url}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["online_store"]["ok"] is False
        assert any(reason.startswith("online store:") for reason in health.json()["reasons"])

        load.phase = "restarting"
        redis_proc, _ = start_redis(served.redis_dir, port=served.redis_port)
        served.redis_proc = redis_proc
        load.phase = "after"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            recent = [r for r in load.results[-10:] if r[0] == "after"]
            if len(recent) == 10 and all(r[3] == "online" for r in recent):
                break
            time.sleep(0.1)
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
