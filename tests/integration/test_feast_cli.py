"""The real ``feast`` binary on a copy of the session's trained world: apply, list, materialize,
serve and the UI, as a Feast user runs them from the repository root.

The CLI takes seconds to start here, so the module makes a handful of calls on one world: one
``feast apply``, the three ``list`` commands, one ``materialize`` and one
``materialize-incremental`` into a private Redis (then checked against the offline store), one
``feast serve`` compared with the API's ``GET /features/{id}``, and one ``feast ui`` whose REST
API must show the project, its views and the feature service. A last call runs with
no ``DATA_DIR`` at all, in a bare copy of the repository, and must use ``data/`` there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from churnfs.settings import PROJECT_ROOT, Settings
from churnfs.store import check_consistency
from churnfs.world import load_world_spec
from serving.app import create_app
from tests.conftest import free_port
from tests.integration.test_serving_support import API_KEY, start_redis, stop_redis

pytestmark = pytest.mark.integration

FEAST = str(Path(sys.executable).with_name("feast"))
VIEWS = (
    "user_profile_features",
    "user_activity_features",
    "user_review_features",
    "user_review_embeddings",
    "churn_labels",
)
SERVICE = "churn_model_v1"
USERS = (1, 2, 3, 5, 8)


@dataclass
class CliWorld:
    settings: Settings
    env: dict[str, str]
    redis_port: int
    apply_seconds: float


def _env(**extra: str) -> dict[str, str]:
    """A user's shell: PATH, HOME and the offline switches, nothing of the project's own."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def _feast(
    args: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [FEAST, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"feast {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def cli_world(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliWorld]:
    workdir = tmp_path_factory.mktemp("feast-cli")
    data_dir = workdir / "world"
    shutil.copytree(
        trained_world.data_dir,
        data_dir,
        ignore=shutil.ignore_patterns("online_store", "predictions", "refreshes", "registry.db"),
    )
    server = start_redis(workdir / "redis")
    port = server.port
    try:
        connection = f"127.0.0.1:{port}"
        env = _env(DATA_DIR=str(data_dir), REDIS_CONNECTION_STRING=connection)
        began = time.perf_counter()
        _feast(["apply"], env)
        apply_seconds = time.perf_counter() - began
        settings = Settings(
            data_dir=data_dir,
            redis_connection_string=connection,
            mlflow_tracking_uri=trained_world.resolved_mlflow_tracking_uri,
            churnfs_api_key=API_KEY,
        )
        yield CliWorld(settings, env, port, apply_seconds)
    finally:
        stop_redis(server)


def test_feast_apply_registers_the_repository_in_the_worlds_registry(cli_world: CliWorld) -> None:
    registry = cli_world.settings.registry_path
    assert registry.is_file() and registry.stat().st_size > 1000
    assert not (PROJECT_ROOT / "${DATA_DIR}").exists()
    print(f"feast apply took {cli_world.apply_seconds:.1f} s")


def test_feast_list_commands_show_the_entity_views_and_service(cli_world: CliWorld) -> None:
    entities = _feast(["entities", "list"], cli_world.env).stdout
    views = _feast(["feature-views", "list"], cli_world.env).stdout
    services = _feast(["feature-services", "list"], cli_world.env).stdout
    assert "user_id" in entities and "user" in entities.split()
    listed = {line.split()[0] for line in views.splitlines()[1:] if line.strip()}
    assert listed == set(VIEWS)
    assert SERVICE in services


def test_feast_materialize_then_incremental_then_serve_equals_the_api(cli_world: CliWorld) -> None:
    """``feast materialize`` up to a week before the world's end, then ``materialize-incremental``
    to the end (it starts where the first stopped; a world's first incremental run would start at
    the wall clock minus the TTL, long after a synthetic world's end). ``feast serve`` then returns
    what the API's ``/features`` returns."""
    import redis

    spec = load_world_spec(cli_world.settings.raw_dir)
    week_before = spec.end - timedelta(days=7)
    _feast(["materialize", spec.start.isoformat(), week_before.isoformat()], cli_world.env)
    client = redis.Redis(port=cli_world.redis_port)
    assert client.dbsize() > 1000
    first = client.dbsize()
    _feast(["materialize-incremental", spec.end.isoformat()], cli_world.env)
    assert client.dbsize() >= first
    report = check_consistency(cli_world.settings, sample=100)
    assert report.as_of == spec.end and report.users >= 100
    assert report.ok, report.mismatches[:3]

    with _feast_server("serve", cli_world.env) as (port, server):
        served = _get_online_features(port, server)

    app = create_app(cli_world.settings, configure_logs=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        for i, user_id in enumerate(USERS):
            response = client.get(f"/features/{user_id}")
            assert response.status_code == 200, response.text
            ours = response.json()["features"]
            compared = 0
            for name, values in served.items():
                if name == "user_id":
                    continue
                assert name in ours, f"{name} is served by feast but not by /features"
                _assert_same(ours[name], values[i], f"user {user_id} {name}")
                compared += 1
            assert compared >= 30


@contextmanager
def _feast_server(command: str, env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``feast serve`` or ``feast ui`` on a free loopback port, stopped on exit."""
    port = free_port()
    server = subprocess.Popen(
        [FEAST, command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield port, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _first_answer(server: subprocess.Popen[str], call: Callable[[], httpx.Response]) -> httpx.Response:
    """Retry ``call`` until the server answers (it starts slowly here), at most 120 s."""
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            pytest.fail(f"feast exited: {server.stderr.read()[-2000:] if server.stderr else ''}")
        try:
            return call()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail("feast did not answer within 120 s")
            time.sleep(0.5)


def _get_online_features(port: int, server: subprocess.Popen[str]) -> dict[str, list[Any]]:
    """Poll ``feast serve`` until it answers, then read the service's features for USERS."""
    body = {"feature_service": SERVICE, "entities": {"user_id": list(USERS)}}
    url = f"http://127.0.0.1:{port}/get-online-features"
    response = _first_answer(server, lambda: httpx.post(url, json=body, timeout=10))
    assert response.status_code == 200, response.text
    payload = response.json()
    names = payload["metadata"]["feature_names"]
    out: dict[str, list[Any]] = {}
    for name, result in zip(names, payload["results"], strict=True):
        assert all(status == "PRESENT" for status in result["statuses"]), (name, result["statuses"])
        out[name.split("__")[-1].split(":")[-1]] = result["values"]
    return out


def _assert_same(ours: Any, theirs: Any, what: str) -> None:
    if isinstance(theirs, list) or isinstance(ours, list):
        np.testing.assert_allclose(np.asarray(ours, float), np.asarray(theirs, float), rtol=0, atol=1e-6)
    elif isinstance(theirs, float) or isinstance(ours, float):
        assert float(ours) == pytest.approx(float(theirs), abs=1e-9), what
    else:
        assert ours == theirs, what


def test_feast_ui_serves_the_registry(cli_world: CliWorld) -> None:
    with _feast_server("ui", cli_world.env) as (port, server):
        base = f"http://127.0.0.1:{port}"
        projects = _first_answer(server, lambda: httpx.get(f"{base}/projects-list.json", timeout=10))
        assert projects.status_code == 200
        assert "churnfs" in {p["id"] for p in projects.json()["projects"]}
        views = httpx.get(f"{base}/api/v1/feature_views", params={"project": "churnfs"}, timeout=30)
        services = httpx.get(f"{base}/api/v1/feature_services", params={"project": "churnfs"}, timeout=30)
        assert views.status_code == 200 and services.status_code == 200
        assert set(VIEWS) <= {_name(v) for v in views.json()["featureViews"]}
        assert SERVICE in {_name(s) for s in services.json()["featureServices"]}
        page = httpx.get(f"{base}/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()


def _name(obj: dict[str, Any]) -> str:
    return str(obj.get("spec", obj).get("name"))


def test_with_nothing_exported_feast_uses_data_under_the_repository(tmp_path: Path) -> None:
    """A bare copy of the repository and a shell with no DATA_DIR: ``feast feature-views list``
    works on ``data/`` there and never makes a folder named ``${DATA_DIR}``."""
    for name in ("feature_store.yaml", ".feastignore"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copytree(
        PROJECT_ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("__pycache__")
    )
    _feast(["feature-views", "list"], _env(), cwd=tmp_path)
    assert (tmp_path / "data" / "registry.db").is_file()
    assert not any("$" in p.name for p in tmp_path.rglob("*"))
