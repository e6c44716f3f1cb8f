"""How ``churnfs summary`` names a world's online store (churnfs/store/embedded.py), from the files
``online-store up`` and ``down`` leave under DATA_DIR; nothing is started or connected to."""

from __future__ import annotations

import json
from pathlib import Path

from churnfs.settings import Settings
from churnfs.store.embedded import describe_online_store


def test_a_world_without_a_private_store_names_the_configured_redis_without_its_password(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, redis_connection_string="10.0.0.5:6380,db=2,password=secret")
    assert describe_online_store(settings) == "10.0.0.5:6380,db=2"
    cluster = Settings(data_dir=tmp_path, redis_connection_string="a:7000,b:7000", redis_type="redis_cluster")
    assert describe_online_store(cluster) == "a:7000,b:7000 (Redis Cluster)"


def test_a_running_private_cluster_is_named_by_its_record_and_a_stopped_one_by_its_folders(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    store_dir = tmp_path / "online_store"
    for index in range(3):
        (store_dir / "cluster" / f"node-{index}").mkdir(parents=True)
        (store_dir / "cluster" / f"node-{index}" / "nodes.conf").write_text("")
    record = {"kind": "redis_cluster", "connection_string": "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"}
    (store_dir / "embedded.json").write_text(json.dumps({**record, "pids": [11, 12, 13]}))
    assert describe_online_store(settings) == (
        "private 3-master Redis Cluster at 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 (pids 11, 12, 13)"
    )
    (store_dir / "embedded.json").unlink()  # what `online-store down` does after stopping them
    assert describe_online_store(settings) == (
        f"private 3-master Redis Cluster under {store_dir / 'cluster'}, stopped "
        "(`churnfs online-store up --cluster 3` starts it again with its data)"
    )
