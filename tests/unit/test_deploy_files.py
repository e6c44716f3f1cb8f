"""The deployment files parse as their platforms read them and agree with the image: the port it
listens on, /health, the start command; no API key is set in any of them (docs/deploy.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.deploy import (
    DEPLOY_FILES,
    DOCKERFILE,
    EC2_UNIT,
    PROJECT_ROOT,
    START_SCRIPT,
    compose,
    final_stage,
    railway_config,
    render_blueprint,
    spaces_front_matter,
    systemd_unit,
)

HEALTH_PATH = "/health"


def image_port() -> str:
    return final_stage().env["PORT"]


def test_image_starts_the_start_script_which_serves_on_all_interfaces() -> None:
    stage = final_stage()
    command = stage.command()
    assert command == ["churnfs-start"]
    assert stage.source_of("/usr/local/bin/churnfs-start") == START_SCRIPT
    assert os.access(START_SCRIPT, os.X_OK), "deploy/start.sh must be executable"
    assert START_SCRIPT.read_text(encoding="utf-8").rstrip().endswith("exec churnfs serve")
    assert stage.env["HOST"] == "0.0.0.0"
    assert stage.expose == [image_port()] == ["8000"]
    assert stage.healthcheck is not None and HEALTH_PATH in stage.healthcheck and "PORT" in stage.healthcheck
    assert stage.user == "churnfs"
    assert stage.env["DATA_DIR"] == "/data"


def test_compose_file_runs_the_api_on_the_image_port_after_the_pipeline() -> None:
    services = compose()["services"]
    api = services["api"]
    assert api["command"] == ["churnfs", "serve"]
    assert api["environment"]["PORT"] == image_port()
    assert any(str(p).endswith(f":{image_port()}") for p in api["ports"])
    assert api["depends_on"]["pipeline"]["condition"] == "service_completed_successfully"
    pipeline = " ".join(services["pipeline"]["command"])
    for stage in ("generate", "features", "apply", "materialize", "train"):
        assert f"churnfs {stage}" in pipeline
    for name in ("redis", "mlflow"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
        assert api["depends_on"][name]["condition"] == "service_healthy"
    assert api["environment"]["CHURNFS_API_KEY"].startswith("${CHURNFS_API_KEY:?")


def _compose_cli() -> list[str] | None:
    """`docker compose` (the v2 plugin) or `docker-compose` (v1): either validates without a daemon."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file_and_requires_an_api_key() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
        )
    env = {k: v for k, v in os.environ.items() if k != "CHURNFS_API_KEY"}
    run = subprocess.run(
        [*cli, "config"],
        cwd=PROJECT_ROOT,
        env={**env, "CHURNFS_API_KEY": "k"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    refused = subprocess.run([*cli, "config"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "CHURNFS_API_KEY" in refused.stderr


def test_render_blueprint_builds_the_image_checks_health_and_wires_key_value() -> None:
    blueprint = render_blueprint()
    by_type = {service["type"]: service for service in blueprint["services"]}
    web, keyvalue = by_type["web"], by_type["keyvalue"]
    assert web["runtime"] == "docker"
    assert (PROJECT_ROOT / web["dockerfilePath"]).resolve() == DOCKERFILE
    assert web["healthCheckPath"] == HEALTH_PATH
    assert web["dockerCommand"].split() == final_stage().command()
    assert web["disk"]["mountPath"] == final_stage().env["DATA_DIR"]
    env = {var["key"]: var for var in web["envVars"]}
    assert env["PORT"]["value"] == image_port()
    assert int(env["CHURNFS_BOOTSTRAP_USERS"]["value"]) > 0
    assert env["CHURNFS_API_KEY"] == {"key": "CHURNFS_API_KEY", "sync": False}
    for key, prop in (("REDIS_HOST", "host"), ("REDIS_PORT", "port")):
        source = env[key]["fromService"]
        assert (source["type"], source["name"], source["property"]) == ("keyvalue", keyvalue["name"], prop)
    assert keyvalue["ipAllowList"] == []
    assert keyvalue["maxmemoryPolicy"] == "noeviction"


def test_railway_config_builds_the_dockerfile_and_checks_health() -> None:
    config = railway_config()
    assert config["build"]["builder"] == "DOCKERFILE"
    assert (PROJECT_ROOT / config["build"]["dockerfilePath"]).resolve() == DOCKERFILE
    assert config["deploy"]["healthcheckPath"] == HEALTH_PATH
    assert config["deploy"]["startCommand"].split() == final_stage().command()
    assert config["deploy"]["healthcheckTimeout"] >= 300


def test_spaces_readme_declares_a_docker_space_on_the_image_port() -> None:
    front = spaces_front_matter()
    assert front["sdk"] == "docker"
    assert str(front["app_port"]) == image_port()
    assert {"title", "emoji", "colorFrom", "colorTo", "short_description"} <= set(front)
    assert len(front["short_description"]) <= 60


def test_ec2_unit_runs_the_compose_stack_with_the_secret_from_an_environment_file() -> None:
    unit = systemd_unit()
    service = unit["Service"]
    assert "docker compose up" in service["ExecStart"]
    assert service["WorkingDirectory"].startswith("/")
    assert service["EnvironmentFile"].startswith("/etc/")
    assert "docker.service" in unit["Unit"]["Requires"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "Environment" not in service, "secrets belong in the EnvironmentFile, not the unit"
    assert EC2_UNIT.read_text(encoding="utf-8").count("CHURNFS_API_KEY=<") == 1


# An assignment of the API key: KEY=value, KEY: value or "KEY", value: ... on one line.
_KEY_ASSIGNMENT = re.compile(r"CHURNFS_API_KEY[\"']?\s*[:=]\s*(?P<value><[^>]*>|[^\s,#]*)")
_ALLOWED_VALUES = re.compile(r"^$|^\$\{CHURNFS_API_KEY:\?|^<[^>]+>$|^\$\(")


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_deployment_file_sets_an_api_key(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for match in _KEY_ASSIGNMENT.finditer(line):
            value = match.group("value").strip("\"'")
            assert _ALLOWED_VALUES.match(value), f"{path.name}:{number} sets CHURNFS_API_KEY to {value!r}"
        assert not re.search(r"password=(?!\.\.\.)[^\s,<$]+", line), f"{path.name}:{number} has a password"
