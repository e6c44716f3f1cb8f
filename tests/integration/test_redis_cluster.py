"""The product on a Redis Cluster (the session's private 3-master cluster): a copy of the trained
world materialized into it serves the offline values of every user, byte for byte what Feast's own
engine writes to the same cluster; a refresh pushes into it; and with one master killed mid-read
the API answers from the offline fallback, never a 5xx, and returns to the cluster once the node
is back."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from churnfs.settings import PROJECT_ROOT, Settings
from churnfs.store import apply_repo, check_consistency, materialize
from churnfs.store.codec import entity_keys_int64
from churnfs.store.redis_servers import RedisClusterServers, connection_nodes
from serving.app import create_app
from tests.integration.test_serving_support import API_KEY, Load, serve_over_http

pytestmark = pytest.mark.integration

REFERENCE_PROJECT = "churnfs_cluster_reference"


@dataclass
class ClusterWorld:
    settings: Settings
    cluster: RedisClusterServers
    users: list[int]
    materialized: dict[str, Any]


def _client(connection_string: str) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in connection_nodes(connection_string)])


def _keys(users: list[int], project: str) -> list[bytes]:
    return [row.tobytes() for row in entity_keys_int64(np.array(users), "user_id", project)]


def _delete_project(client: RedisCluster, project: str) -> None:
    for key in list(client.scan_iter(match=b"*" + project.encode())):
        client.delete(key)


def _hashes(client: RedisCluster, keys: list[bytes]) -> list[dict[bytes, bytes]]:
    with client.pipeline() as pipe:
        for key in keys:
            pipe.hgetall(key)
        return list(pipe.execute())


@pytest.fixture(scope="module")
def cluster_world(
    trained_world: Settings, redis_cluster: RedisClusterServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterWorld]:
    """A copy of the trained world (registry applied afresh) materialized into the session's
    cluster by the bulk engine, as `REDIS_TYPE=redis_cluster churnfs materialize` does."""
    workdir = tmp_path_factory.mktemp("cluster-world")
    data_dir = workdir / "world"
    shutil.copytree(
        trained_world.data_dir,
        data_dir,
        ignore=shutil.ignore_patterns("online_store", "predictions", "refreshes", "registry.db"),
    )
    settings = Settings(
        data_dir=data_dir,
        redis_connection_string=redis_cluster.connection_string,
        redis_type="redis_cluster",
        mlflow_tracking_uri=trained_world.resolved_mlflow_tracking_uri,
        churnfs_api_key=API_KEY,
    )
    apply_repo(settings)
    summary = materialize(settings)
    profile = pd.read_parquet(
        settings.offline_store_dir / "user_profile_features.parquet", columns=["user_id"]
    )
    world = ClusterWorld(settings, redis_cluster, sorted(set(profile["user_id"].tolist())), summary)
    try:
        yield world
    finally:
        client = _client(world.cluster.connection_string)
        _delete_project(client, "churnfs")
        client.close()


def test_materialized_cluster_serves_every_users_offline_values(cluster_world: ClusterWorld) -> None:
    assert cluster_world.materialized["rows written"] != "n/a (Feast's local engine)"
    report = check_consistency(cluster_world.settings, sample=10**6)
    assert report.ok, report.mismatches
    assert report.users == len(cluster_world.users) and report.features == 33
    # The keys are spread over every master, each holding a share of them.
    sizes = [redis.Redis(host=node.host, port=node.port).dbsize() for node in cluster_world.cluster.nodes]
    assert min(sizes) > len(cluster_world.users) / 6, sizes


def test_cluster_hashes_are_byte_identical_to_what_feasts_own_engine_writes(
    cluster_world: ClusterWorld, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "feature_repo", repo / "feature_repo")
    shutil.copy(PROJECT_ROOT / ".feastignore", repo / ".feastignore")
    config = yaml.safe_load((PROJECT_ROOT / "feature_store.yaml").read_text())
    config["project"] = REFERENCE_PROJECT
    config["online_store"] = {
        "type": "redis",
        "redis_type": "redis_cluster",
        "connection_string": "${REDIS_CONNECTION_STRING}",
    }
    config.pop("batch_engine")
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    world = tmp_path / "world"
    world.mkdir()
    (world / "offline_store").symlink_to(cluster_world.settings.offline_store_dir.resolve())
    (world / "raw").symlink_to(cluster_world.settings.raw_dir.resolve())
    reference = cluster_world.settings.model_copy(update={"data_dir": world, "feast_repo_path": repo})
    apply_repo(reference)
    client = _client(cluster_world.cluster.connection_string)
    try:
        assert materialize(reference)["rows written"] == "n/a (Feast's local engine)"
        users = cluster_world.users
        ours = _hashes(client, _keys(users, "churnfs"))
        feasts = _hashes(client, _keys(users, REFERENCE_PROJECT))
        assert all(len(h) == 4 + 7 + 16 + 9 + 1 for h in ours)  # four _ts fields, 33 features
        assert [u for u, a, b in zip(users, ours, feasts, strict=True) if a != b] == []
    finally:
        _delete_project(client, REFERENCE_PROJECT)
        client.close()


def test_a_refresh_pushes_into_the_cluster(cluster_world: ClusterWorld) -> None:
    user_id = cluster_world.users[len(cluster_world.users) // 2]
    with TestClient(create_app(cluster_world.settings, configure_logs=False)) as client:
        response = client.post(f"/refresh/{user_id}", headers={"X-API-Key": API_KEY})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["online_written"] is True
        after = client.get(f"/features/{user_id}").json()
    assert after["source"] == "online"
    as_of = datetime.fromisoformat(body["as_of"])
    assert datetime.fromisoformat(after["views"]["user_activity_features"]["event_timestamp"]) == as_of
    report = check_consistency(cluster_world.settings, sample=50)
    assert report.ok, report.mismatches
    assert user_id in report.refreshed_user_ids


def _users_by_node(world: ClusterWorld) -> dict[str, list[int]]:
    """The world's users grouped by the master holding their hash (``host:port``)."""
    client = _client(world.cluster.connection_string)
    try:
        owner = {slot: nodes[0].name for slot, nodes in client.nodes_manager.slots_cache.items() if nodes}
    finally:
        client.close()
    out: dict[str, list[int]] = {}
    for user, key in zip(world.users, _keys(world.users, "churnfs"), strict=True):
        out.setdefault(owner[key_slot(key)], []).append(user)
    return out


def test_a_killed_node_mid_read_falls_back_without_errors_and_recovers(cluster_world: ClusterWorld) -> None:
    by_node = _users_by_node(cluster_world)
    victim_index = 1
    victim = cluster_world.cluster.nodes[victim_index]
    assert set(by_node) == {node.address for node in cluster_world.cluster.nodes}
    # Users on every master, so reads hit the killed one whichever users come first.
    users = [u for node in sorted(by_node) for u in by_node[node][:4]]
    with serve_over_http(cluster_world.settings) as base_url:
        load = Load(base_url, users)
        worker = threading.Thread(target=load.run, daemon=True)
        worker.start()
        try:
            load.wait_for("before", 20)
            load.phase = "killing"  # reads of the live masters may still succeed until one fails
            # One answer tagged "killing" means the last request sent "before" has been answered:
            # none is in flight across the kill (one was, once, and came back offline).
            load.wait_for("killing", 1)
            victim.kill()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                r[0] == "killing" and r[3] == "offline" for r in load.results
            ):
                time.sleep(0.05)
            load.phase = "down"
            load.wait_for("down", 40)
            health = httpx.get(f"{base_url}/health", timeout=10).json()
            assert health["status"] == "degraded" and health["online_store"]["ok"] is False
            assert victim.address in health["online_store"]["detail"]

            load.phase = "restarting"
            cluster_world.cluster.restart_node(victim_index)
            load.phase = "after"
            load.wait_until_online("after")
        finally:
            load.stop.set()
            worker.join(timeout=30)
        health = httpx.get(f"{base_url}/health", timeout=10).json()

    statuses = {r[2] for r in load.results}
    assert statuses == {200}, f"statuses seen: {sorted(statuses)}"
    phases = {phase: [r[3] for r in load.results if r[0] == phase] for phase in ("before", "down", "after")}
    assert set(phases["before"]) == {"online"}
    assert set(phases["down"]) == {"offline"} and len(phases["down"]) >= 40
    assert phases["after"][-10:] == ["online"] * 10, "the service did not return to the cluster"
    assert health["status"] == "ok" and health["online_store"]["ok"] is True
    # The killed node kept its data (append-only file): the cluster still serves the offline values.
    assert check_consistency(cluster_world.settings, sample=200).ok
