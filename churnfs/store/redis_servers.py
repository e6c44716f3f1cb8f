"""Private Redis servers and clusters on free loopback ports, and Feast's Redis connection string.

One place for what ``churnfs online-store up``, the tests and the benchmarks all need: a free
port, whether a Redis answers there, a ``redis-server`` started as a daemon with its pid, log and
data under one folder (so it outlives the command that started it, as the demo's online store
must), a Redis Cluster of such servers joined by ``redis-cli --cluster create``, and Feast's
connection-string convention: ``host:port[,host:port ...][,key=value ...]``, every node of a
cluster listed, options parsed as Feast parses them (JSON values where they are JSON).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from churnfs.store.errors import OnlineStoreUnavailableError

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 6379
CLUSTER_NODE_TIMEOUT_MS = 2000
"""How long a private cluster's nodes wait before calling a silent node failed (Redis' default is
15 s; a private cluster has no replicas to fail over to, so waiting longer only delays the verdict)."""

Persistence = Literal["none", "snapshot", "aof"]
"""What a private server keeps on disk: nothing, an RDB snapshot (written every minute after 1,000
writes and on a clean stop), or an append-only file (fsync every second: survives a SIGKILL)."""

_PERSISTENCE_ARGS: dict[str, list[str]] = {
    "none": ["--save", "", "--appendonly", "no"],
    "snapshot": ["--save", "60 1000", "--dbfilename", "dump.rdb", "--appendonly", "no"],
    "aof": ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
}
_CONNECTION_OPTIONS = {"db", "password", "username", "ssl"}


class RedisServerError(OnlineStoreUnavailableError):
    """A private redis-server or cluster could not be started."""


# --- connection strings --------------------------------------------------------------------------


def connection_nodes(connection_string: str) -> list[tuple[str, int]]:
    """Every ``host:port`` of a connection string (one for a server, each node for a cluster)."""
    nodes = []
    for part in connection_string.split(","):
        part = part.strip()
        if not part or "=" in part:
            continue
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            nodes.append((host or LOOPBACK, int(port or DEFAULT_PORT)))
        except ValueError:
            raise OnlineStoreUnavailableError(
                f"REDIS_CONNECTION_STRING {connection_string!r} is not host:port[,host:port...][,db=N]"
                "[,password=...]"
            ) from None
    if not nodes:
        raise OnlineStoreUnavailableError(f"REDIS_CONNECTION_STRING {connection_string!r} names no host:port")
    return nodes


def connection_options(connection_string: str) -> dict[str, Any]:
    """The ``key=value`` options redis-py's clients take (``db``, ``password``, ``username``,
    ``ssl``), each value parsed as JSON where it is JSON, as Feast does."""
    out: dict[str, Any] = {}
    for part in connection_string.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in _CONNECTION_OPTIONS:
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def describe_connection(connection_string: str) -> str:
    """``host:port/db`` (or every node of a cluster), without secrets: for health and logs."""
    try:
        nodes = connection_nodes(connection_string)
    except OnlineStoreUnavailableError:
        return "invalid connection string"
    db = connection_options(connection_string).get("db", 0)
    if len(nodes) > 1:
        return ",".join(f"{h}:{p}" for h, p in nodes)
    return f"{nodes[0][0]}:{nodes[0][1]}/{db}"


# --- probing ------------------------------------------------------------------------------------


CLUSTER_BUS_OFFSET = 10000
"""A cluster node also listens on its port + 10000 (the cluster bus)."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK, cluster: bool = False) -> int:
    """A TCP port nothing listens on now (the OS picks it); with ``cluster``, one whose cluster bus
    port (+10000) is a valid port and free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if not cluster or (
            port + CLUSTER_BUS_OFFSET <= 65535 and _port_free(host, port + CLUSTER_BUS_OFFSET)
        ):
            return port
    raise RedisServerError("found no free port pair for a cluster node (port and port + 10000)")


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING (or asks for a password) at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG") or b"NOAUTH" in reply


def _client(host: str, port: int, options: dict[str, Any], timeout_s: float) -> Any:
    """A redis-py client that tries once, with short timeouts (a health check must not retry)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        **options,
    )


def redis_client(connection_string: str, timeout_s: float = 5.0) -> Any:
    """A redis-py client on the first node of a Feast connection string (host, port, ``db``,
    ``password``, ``username``, ``ssl``), with ``timeout_s`` to connect and per command."""
    import redis

    host, port = connection_nodes(connection_string)[0]
    return redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        **connection_options(connection_string),
    )


class RedisPing:
    """A cheap, non-retrying health check of the online store: a PING for one server; for a
    cluster, ``CLUSTER SLOTS`` from the first listed node that answers, then ``CLUSTER INFO`` of
    every master it names, each answering ``cluster_state:ok`` (a dead master is seen at once,
    before the cluster marks it failed; a returned one only once every master agrees)."""

    def __init__(self, connection_string: str, cluster: bool, timeout_s: float = 0.5) -> None:
        self.cluster = cluster
        self.address = describe_connection(connection_string)
        self._nodes = connection_nodes(connection_string)
        self._options = connection_options(connection_string)
        if cluster:
            self._options.pop("db", None)  # a cluster has database 0 only
        self._timeout_s = timeout_s
        self._clients: dict[tuple[str, int], Any] = {}

    def _node(self, host: str, port: int) -> Any:
        client = self._clients.get((host, port))
        if client is None:
            client = self._clients[(host, port)] = _client(host, port, self._options, self._timeout_s)
        return client

    def problem(self) -> str | None:
        """None when the store serves reads, else what is wrong (one line)."""
        import redis

        if not self.cluster:
            host, port = self._nodes[0]
            try:
                self._node(host, port).ping()
            except redis.RedisError as exc:
                return f"Redis does not answer at {host}:{port} ({_first_line(exc)})"
            return None
        slots = None
        for host, port in self._nodes:
            try:
                slots = self._node(host, port).execute_command("CLUSTER SLOTS")
                break
            except redis.RedisError:
                continue
        if slots is None:
            return f"no node of the Redis Cluster {self.address} answers"
        # Every master's own view: after a node returns, the others may still say "down" a while.
        for host, port in sorted({(_text(entry[2][0]), int(entry[2][1])) for entry in slots}):
            try:
                state = _cluster_info(self._node(host, port).execute_command("CLUSTER INFO"))
            except redis.RedisError as exc:
                return f"Redis Cluster node {host}:{port} unreachable: {_first_line(exc)}"
            if state.get("cluster_state") != "ok":
                return f"Redis Cluster node {host}:{port} reports cluster_state:{state.get('cluster_state')}"
        return None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cluster_info(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    lines = _text(reply).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- private servers ----------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited; then, briefly, until it is reaped too (a daemon's parent is
    init, which may take a moment), so the pid no longer names a process at all."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    reaped_by = time.monotonic() + 2.0
    while time.monotonic() < reaped_by:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.02)
    return True


@dataclass(frozen=True)
class RedisServer:
    """A private ``redis-server`` running as a daemon, its files under ``directory``."""

    port: int
    directory: Path
    pid: int
    persistence: Persistence = "none"
    cluster: bool = False
    host: str = LOOPBACK

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (Redis saves a snapshot first when it keeps one) and wait for the exit."""
        if pid_alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            if not _wait_gone(self.pid, timeout_s):
                self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved on the way out."""
        if pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, 10.0)

    def restart(self) -> RedisServer:
        """Start it again on the same port and folder (it loads what it kept on disk)."""
        self.stop()
        return start_redis_server(
            self.directory, port=self.port, persistence=self.persistence, cluster=self.cluster
        )


def start_redis_server(
    directory: Path,
    port: int | None = None,
    persistence: Persistence = "none",
    cluster: bool = False,
    timeout_s: float = 15.0,
) -> RedisServer:
    """Start a ``redis-server`` daemon on loopback (``port``, or a free one) with its pid file,
    log and data under ``directory``; with ``cluster`` it is a cluster node (no slots yet)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerError("no redis-server binary on PATH: install Redis (apt-get install redis-server)")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(cluster=cluster)
    pidfile = directory / "redis.pid"
    pidfile.unlink(missing_ok=True)
    cluster_args = (
        [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
        ]
        if cluster
        else []
    )  # fmt: skip
    subprocess.run(
        [
            binary,
            "--bind", LOOPBACK,
            "--port", str(port),
            "--dir", str(directory),
            *_PERSISTENCE_ARGS[persistence],
            *cluster_args,
            "--daemonize", "yes",
            "--pidfile", str(pidfile),
            "--logfile", str(directory / "redis.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pidfile.exists() and redis_answers(LOOPBACK, port):
            text = pidfile.read_text().strip()
            if text:
                return RedisServer(port, directory, int(text), persistence, cluster)
        time.sleep(0.02)
    raise RedisServerError(f"redis-server did not start on port {port}: see {directory / 'redis.log'}")


@dataclass
class RedisClusterServers:
    """A private Redis Cluster: one master per server, no replicas, every slot assigned."""

    nodes: list[RedisServer]

    @property
    def connection_string(self) -> str:
        """Feast's connection string of the cluster: every node's ``host:port``."""
        return ",".join(node.address for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def restart_node(self, index: int) -> RedisServer:
        """Start node ``index`` again on its port and folder (after a stop or a kill) and wait
        until the cluster is whole again."""
        self.nodes[index] = self.nodes[index].restart()
        wait_for_cluster(self.connection_string)
        return self.nodes[index]


def _node_port(node_dir: Path) -> int | None:
    """The port a cluster node kept in its ``nodes.conf`` (its ``myself`` line), if any."""
    try:
        lines = (node_dir / "nodes.conf").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2].split(","):
            return int(fields[1].split("@")[0].rpartition(":")[2])
    return None


def start_redis_cluster(
    directory: Path, masters: int = 3, persistence: Persistence = "none", timeout_s: float = 30.0
) -> RedisClusterServers:
    """Start ``masters`` cluster-enabled servers under ``directory/node-<i>/`` on free ports, join
    them with ``redis-cli --cluster create ... --cluster-replicas 0`` and wait until every node
    says ``cluster_state:ok``. A cluster stopped earlier under ``directory`` is started again
    instead, on its ports, with what it kept on disk."""
    if masters < 3:
        raise RedisServerError(f"a Redis Cluster needs at least 3 masters, got {masters}")
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RedisServerError("no redis-cli binary on PATH: install Redis (apt-get install redis-server)")
    folders = [Path(directory) / f"node-{index}" for index in range(masters)]
    kept = [_node_port(folder) for folder in folders]
    nodes: list[RedisServer] = []
    try:
        if all(kept):
            for folder, port in zip(folders, kept, strict=True):
                nodes.append(start_redis_server(folder, port=port, persistence=persistence, cluster=True))
            servers = RedisClusterServers(nodes)
            wait_for_cluster(servers.connection_string, timeout_s=timeout_s)
            return servers
        if any(kept):
            raise RedisServerError(
                f"{directory} holds part of an earlier cluster: remove it to start a new, empty one"
            )
        for folder in folders:
            nodes.append(start_redis_server(folder, persistence=persistence, cluster=True))
        addresses = [n.address for n in nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if created.returncode != 0:
            tail = (created.stdout + created.stderr).strip().splitlines()[-1:]
            raise RedisServerError(f"redis-cli --cluster create failed: {' '.join(tail)}")
        servers = RedisClusterServers(nodes)
        wait_for_cluster(servers.connection_string, timeout_s=timeout_s)
        return servers
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def wait_for_cluster(connection_string: str, timeout_s: float = 30.0) -> None:
    """Wait until every listed node answers ``cluster_state:ok`` and knows every other node."""
    import redis

    nodes = connection_nodes(connection_string)
    deadline = time.monotonic() + timeout_s
    problem = "not checked"
    while time.monotonic() < deadline:
        problem = ""
        for host, port in nodes:
            client = _client(host, port, {}, 1.0)
            try:
                info = _cluster_info(client.execute_command("CLUSTER INFO"))
            except redis.RedisError as exc:
                problem = f"{host}:{port}: {_first_line(exc)}"
                break
            finally:
                client.close()
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(nodes):
                problem = f"{host}:{port}: cluster_state:{info.get('cluster_state')}"
                break
        if not problem:
            return
        time.sleep(0.1)
    raise RedisServerError(
        f"the Redis Cluster {connection_string} is not ready after {timeout_s:.0f} s ({problem})"
    )
