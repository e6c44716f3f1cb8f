"""The image's start command, run as the Dockerfile says but from the virtualenv, serves a copy
of the session's trained world: /health answers ok. Docker itself does not run here
(docs/deploy.md, "What is checked")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from churnfs.settings import Settings
from tests.conftest import free_port
from tests.fixtures.deploy import PROJECT_ROOT, final_stage
from tests.integration.test_serving_support import ServedWorld, serve_world

pytestmark = pytest.mark.integration

STARTUP_S = 180


@pytest.fixture(scope="module")
def served(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWorld]:
    with serve_world(trained_world, tmp_path_factory.mktemp("deploy-start")) as world:
        yield world


def image_command_here() -> list[str]:
    """The image's command with each path inside the image mapped to the repository file a COPY
    put there (deploy/start.sh for churnfs-start)."""
    stage = final_stage()
    command = stage.command()
    program = command[0]
    path = program if program.startswith("/") else f"/usr/local/bin/{program}"
    source = stage.source_of(path)
    assert source is not None, f"{program}: no COPY in the Dockerfile puts it at {path}"
    return [str(source), *command[1:]]


def image_environment(served: ServedWorld, port: int) -> dict[str, str]:
    """The Dockerfile's ENV, with this machine's paths (virtualenv, world, repository) in place of
    the image's and a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNFS_")}
    env.update(final_stage().env)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DATA_DIR=str(served.settings.data_dir),
        FEAST_REPO_PATH=str(PROJECT_ROOT),
        HOST="127.0.0.1",
        PORT=str(port),
        REDIS_CONNECTION_STRING=served.settings.redis_connection_string,
        MLFLOW_TRACKING_URI=served.settings.resolved_mlflow_tracking_uri,
    )
    return env


def test_the_image_start_command_serves_health_ok(served: ServedWorld, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            image_command_here(),
            cwd=tmp_path,
            env=image_environment(served, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_S
        body: dict[str, object] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                body = response.json()
                if response.status_code == 200 and body.get("status") == "ok":
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert proc.poll() is None, (
            f"the start command exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        )
        assert body.get("status") == "ok", f"/health: {body}\n{log.read_text()[-3000:]}"
        assert body["model"]["alias"] == "champion"  # type: ignore[index]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
