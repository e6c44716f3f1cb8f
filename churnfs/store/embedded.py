"""An online store for a fresh laptop: a private redis-server (or Redis Cluster) under DATA_DIR,
else SQLite.

Tests and production always use a real Redis at ``REDIS_CONNECTION_STRING``. For ``make demo``
on a machine where nothing answers there, ``start_embedded_online_store`` starts a private
``redis-server`` on a free loopback port with its data under ``DATA_DIR/online_store/`` (when the
binary exists), else picks Feast's SQLite online store, and records the choice in
``DATA_DIR/online_store/embedded.json``. With ``cluster_masters`` (``churnfs online-store up
--cluster 3``) it starts a private Redis Cluster of that many masters instead, whatever answers at
``REDIS_CONNECTION_STRING``. ``get_store`` honours the record for this world, so every later
command finds the same store; ``stop_embedded_online_store`` stops the servers and removes the
record. The servers themselves are ``churnfs.store.redis_servers``'.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from churnfs.io import write_text_atomic
from churnfs.settings import Settings
from churnfs.store.errors import OnlineStoreUnavailableError
from churnfs.store.redis_servers import (
    RedisServer,
    connection_nodes,
    redis_answers,
    start_redis_cluster,
    start_redis_server,
)

logger = logging.getLogger(__name__)

EMBEDDED_DIR = "online_store"
RECORD_FILE = "embedded.json"
CLUSTER_DIR = "cluster"
SQLITE_FILE = "online_store.db"


@dataclass(frozen=True)
class EmbeddedOnlineStore:
    """The online store a world uses when no shared Redis answers (or a private cluster)."""

    kind: Literal["redis", "redis_cluster", "sqlite"]
    connection_string: str = ""
    pid: int = 0
    sqlite_path: str = ""
    pids: tuple[int, ...] = ()  # a cluster's servers, in the order of connection_string

    def describe(self) -> str:
        if self.kind == "redis":
            return f"private redis-server at {self.connection_string} (pid {self.pid})"
        if self.kind == "redis_cluster":
            pids = ", ".join(str(p) for p in self.pids)
            return f"private {len(self.pids)}-master Redis Cluster at {self.connection_string} (pids {pids})"
        return f"Feast's SQLite online store at {self.sqlite_path}"

    def servers(self, directory: Path) -> list[RedisServer]:
        """The private servers behind this record (none for SQLite)."""
        if self.kind == "redis":
            (_, port), *_ = connection_nodes(self.connection_string)
            return [RedisServer(port, directory, self.pid)]
        nodes = connection_nodes(self.connection_string) if self.kind == "redis_cluster" else []
        return [RedisServer(port, directory, pid) for (_, port), pid in zip(nodes, self.pids, strict=True)]


def embedded_dir(settings: Settings) -> Path:
    return settings.data_dir / EMBEDDED_DIR


def _record_path(settings: Settings) -> Path:
    return embedded_dir(settings) / RECORD_FILE


def parse_host_port(connection_string: str) -> tuple[str, int]:
    """Host and port of the first node of a Feast Redis connection string."""
    return connection_nodes(connection_string)[0]


def _read_record(settings: Settings) -> EmbeddedOnlineStore | None:
    path = _record_path(settings)
    if not path.exists():
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    fields["pids"] = tuple(fields.get("pids", ()))
    return EmbeddedOnlineStore(**fields)


def load_embedded_online_store(settings: Settings) -> EmbeddedOnlineStore | None:
    """The embedded store recorded for this world, if it is still usable."""
    record = _read_record(settings)
    if record is None:
        return None
    if record.kind in ("redis", "redis_cluster"):
        for host, port in connection_nodes(record.connection_string):
            if not redis_answers(host, port):
                flag = " --cluster N" if record.kind == "redis_cluster" else ""
                raise OnlineStoreUnavailableError(
                    f"the {record.describe()} of this world does not answer at {host}:{port}: run "
                    f"`churnfs online-store down` and `churnfs online-store up{flag}` again"
                )
    return record


def start_embedded_online_store(
    settings: Settings, cluster_masters: int | None = None
) -> EmbeddedOnlineStore | None:
    """Make sure this world has an online store. Returns None when the configured Redis answers
    (nothing to start), else the private redis-server or SQLite store now recorded for it. With
    ``cluster_masters`` a private Redis Cluster of that many masters is started (and returned)
    even when the configured Redis answers."""
    existing = load_embedded_online_store(settings)
    if existing is not None:
        wanted = "redis_cluster" if cluster_masters else existing.kind
        if existing.kind != wanted or (cluster_masters and len(existing.pids) != cluster_masters):
            raise OnlineStoreUnavailableError(
                f"this world already uses a {existing.describe()}: run `churnfs online-store down` first"
            )
        return existing
    directory = embedded_dir(settings).resolve()
    if cluster_masters:
        directory.mkdir(parents=True, exist_ok=True)
        cluster = start_redis_cluster(
            directory / CLUSTER_DIR, masters=cluster_masters, persistence="snapshot"
        )
        store = EmbeddedOnlineStore(
            kind="redis_cluster",
            connection_string=cluster.connection_string,
            pids=tuple(node.pid for node in cluster.nodes),
        )
        write_text_atomic(json.dumps(asdict(store), indent=2), directory / RECORD_FILE)
        logger.info("this world uses a %s", store.describe())
        return store
    host, port = parse_host_port(settings.redis_connection_string)
    if redis_answers(host, port):
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("redis-server") is not None:
        server = start_redis_server(directory, persistence="snapshot")
        store = EmbeddedOnlineStore(kind="redis", connection_string=server.address, pid=server.pid)
    else:
        store = EmbeddedOnlineStore(kind="sqlite", sqlite_path=str(directory / SQLITE_FILE))
    write_text_atomic(json.dumps(asdict(store), indent=2), directory / RECORD_FILE)
    logger.warning("nothing answers at %s:%d; this world uses a %s", host, port, store.describe())
    return store


def stop_embedded_online_store(settings: Settings) -> EmbeddedOnlineStore | None:
    """Stop this world's private redis-server or cluster (each server saves its data first) and
    forget the record. Returns what was stopped, or None when the world had no embedded store."""
    record = _read_record(settings)
    if record is None:
        return None
    for server in record.servers(embedded_dir(settings)):
        server.stop()
    _record_path(settings).unlink()
    return record


def describe_online_store(settings: Settings) -> str:
    """What this world's online store is, in one line, without connecting to it: the private
    store ``online-store up`` recorded, a private cluster stopped under DATA_DIR, or the
    configured Redis (no password)."""
    record = _read_record(settings)
    if record is not None:
        return record.describe()
    cluster_dir = embedded_dir(settings) / CLUSTER_DIR
    kept = sorted(cluster_dir.glob("node-*/nodes.conf"))
    if kept:
        return (
            f"private {len(kept)}-master Redis Cluster under {cluster_dir}, stopped "
            f"(`churnfs online-store up --cluster {len(kept)}` starts it again with its data)"
        )
    kind = " (Redis Cluster)" if settings.redis_type == "redis_cluster" else ""
    return settings.redis_connection_string.split(",password=")[0] + kind


def online_store_override(settings: Settings) -> dict[str, Any] | None:
    """The ``online_store`` section that replaces feature_store.yaml's for this world, if any."""
    record = load_embedded_online_store(settings)
    if record is None:
        return None
    if record.kind == "sqlite":
        return {"type": "sqlite", "path": record.sqlite_path}
    return {"connection_string": record.connection_string, "redis_type": record.kind}
