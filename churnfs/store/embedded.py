"""An online store for a fresh laptop: a private redis-server under DATA_DIR, else SQLite.

Tests and production always use a real Redis at ``REDIS_CONNECTION_STRING``. For ``make demo``
on a machine where nothing answers there, ``start_embedded_online_store`` starts a private
``redis-server`` on a free loopback port with its data under ``DATA_DIR/online_store/`` (when the
binary exists), else picks Feast's SQLite online store, and records the choice in
``DATA_DIR/online_store/embedded.json``. ``get_store`` honours that record for this world, so
every later command finds the same store; ``stop_embedded_online_store`` stops the server and
removes the record.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from churnfs.io import write_text_atomic
from churnfs.settings import Settings
from churnfs.store.errors import OnlineStoreUnavailableError

logger = logging.getLogger(__name__)

EMBEDDED_DIR = "online_store"
RECORD_FILE = "embedded.json"
SQLITE_FILE = "online_store.db"


@dataclass(frozen=True)
class EmbeddedOnlineStore:
    """The online store a world uses when no shared Redis answers."""

    kind: Literal["redis", "sqlite"]
    connection_string: str = ""
    pid: int = 0
    sqlite_path: str = ""

    def describe(self) -> str:
        if self.kind == "redis":
            return f"private redis-server at {self.connection_string} (pid {self.pid})"
        return f"Feast's SQLite online store at {self.sqlite_path}"


def embedded_dir(settings: Settings) -> Path:
    return settings.data_dir / EMBEDDED_DIR


def _record_path(settings: Settings) -> Path:
    return embedded_dir(settings) / RECORD_FILE


def parse_host_port(connection_string: str) -> tuple[str, int]:
    """Host and port of the first node of a Feast Redis connection string."""
    first = next((p for p in connection_string.split(",") if "=" not in p), "")
    host, _, port = first.strip().partition(":")
    try:
        return host or "127.0.0.1", int(port or 6379)
    except ValueError:
        raise OnlineStoreUnavailableError(
            f"REDIS_CONNECTION_STRING {connection_string!r} is not host:port[,db=N][,password=...]"
        ) from None


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING (or asks for a password) at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG") or b"NOAUTH" in reply


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def load_embedded_online_store(settings: Settings) -> EmbeddedOnlineStore | None:
    """The embedded store recorded for this world, if it is still usable."""
    path = _record_path(settings)
    if not path.exists():
        return None
    record = EmbeddedOnlineStore(**json.loads(path.read_text(encoding="utf-8")))
    if record.kind == "redis":
        host, port = parse_host_port(record.connection_string)
        if not redis_answers(host, port):
            raise OnlineStoreUnavailableError(
                f"the private redis-server of this world ({record.connection_string}) is gone: "
                "run `churnfs online-store up` again"
            )
    return record


def start_embedded_online_store(settings: Settings) -> EmbeddedOnlineStore | None:
    """Make sure this world has an online store. Returns None when the configured Redis answers
    (nothing to start), else the private redis-server or SQLite store now recorded for it."""
    existing = load_embedded_online_store(settings)
    if existing is not None:
        return existing
    host, port = parse_host_port(settings.redis_connection_string)
    if redis_answers(host, port):
        return None
    directory = embedded_dir(settings).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary is not None:
        store = _start_redis(binary, directory)
    else:
        store = EmbeddedOnlineStore(kind="sqlite", sqlite_path=str(directory / SQLITE_FILE))
    write_text_atomic(json.dumps(asdict(store), indent=2), directory / RECORD_FILE)
    logger.warning("nothing answers at %s:%d; this world uses a %s", host, port, store.describe())
    return store


def _start_redis(binary: str, directory: Path) -> EmbeddedOnlineStore:
    port = _free_port()
    pidfile = directory / "redis.pid"
    subprocess.run(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(directory),
            "--dbfilename", "dump.rdb",
            "--save", "60 1000",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(pidfile),
            "--logfile", str(directory / "redis.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        if redis_answers("127.0.0.1", port) and pidfile.exists():
            pid = int(pidfile.read_text().strip())
            return EmbeddedOnlineStore(kind="redis", connection_string=f"127.0.0.1:{port}", pid=pid)
        time.sleep(0.05)
    raise OnlineStoreUnavailableError(
        f"redis-server did not start on port {port}: see {directory / 'redis.log'}"
    )


def stop_embedded_online_store(settings: Settings) -> EmbeddedOnlineStore | None:
    """Stop this world's private redis-server (it saves its data first) and forget the record.
    Returns what was stopped, or None when the world had no embedded store."""
    path = _record_path(settings)
    if not path.exists():
        return None
    record = EmbeddedOnlineStore(**json.loads(path.read_text(encoding="utf-8")))
    if record.kind == "redis" and record.pid and _pid_alive(record.pid):
        os.kill(record.pid, signal.SIGTERM)
        for _ in range(100):
            if not _pid_alive(record.pid):
                break
            time.sleep(0.05)
    path.unlink()
    return record


def online_store_override(settings: Settings) -> dict[str, Any] | None:
    """The ``online_store`` section that replaces feature_store.yaml's for this world, if any."""
    record = load_embedded_online_store(settings)
    if record is None:
        return None
    if record.kind == "sqlite":
        return {"type": "sqlite", "path": record.sqlite_path}
    return {"connection_string": record.connection_string}
