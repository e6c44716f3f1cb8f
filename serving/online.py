"""Online reads through Feast, guarded by a circuit breaker on Redis.

Feast's Redis client retries a refused connection three times with exponential back-off (up to
about 14 s per call with redis-py's defaults), which would turn an outage into stalled
requests. So the service (1) caps that client's retries and timeouts, and (2) after a
failure stops calling Redis at all, answering from the offline store, until a cheap ``PING``
(at most one per ``retry_after_s``) says Redis is back: then Feast is used again, no restart.
On a Redis Cluster one dead master is an outage too (its slots cannot be read, and after the
cluster's node timeout every node answers CLUSTERDOWN): the probe asks every master, and the
service returns to Redis only once all of them answer and agree the cluster is ok.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from churnfs.errors import ChurnFSError
from serving.errors import OnlineStoreUnavailableError
from serving.offline import ViewRow

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5
"""Socket connect / read timeout of every Redis call the service makes."""


@dataclass(frozen=True)
class FeatureLayout:
    """A feature service's features grouped by feature view, in the service's order."""

    feature_service: str
    views: dict[str, list[str]]

    @property
    def names(self) -> list[str]:
        return [name for names in self.views.values() for name in names]

    @classmethod
    def from_feature_service(cls, service: Any) -> FeatureLayout:
        """Read a Feast ``FeatureService``'s projections."""
        return cls(
            feature_service=service.name,
            views={p.name: [f.name for f in p.features] for p in service.feature_view_projections},
        )


def parse_redis_connection_string(connection_string: str) -> dict[str, Any]:
    """Feast's Redis convention (``host:port[,db=N][,password=...][,ssl=true]``) as redis-py
    keyword arguments: the first ``host:port`` and the parameters the service needs."""
    from churnfs.store.redis_servers import connection_nodes, connection_options

    try:
        ((host, port), *_) = connection_nodes(connection_string)
    except ChurnFSError:
        raise ValueError(f"no host:port in the Redis connection string {connection_string!r}") from None
    return {"host": host, "port": port, **connection_options(connection_string)}


def describe_redis(connection_string: str) -> str:
    """``host:port/db`` of a connection string (every node of a cluster), without secrets (for
    health and logs)."""
    from churnfs.store.redis_servers import describe_connection

    return describe_connection(connection_string)


def is_cluster(online_store_config: Any) -> bool:
    """Whether Feast's online store config names a Redis Cluster (``redis_type: redis_cluster``)."""
    return getattr(online_store_config, "redis_type", None) == "redis_cluster"


class RedisProbe:
    """A cheap, non-retrying health check with a short timeout: ``PING`` on one Redis; on a
    cluster, every master answers and says ``cluster_state:ok`` (``churnfs.store.redis_servers``)."""

    def __init__(
        self, connection_string: str, timeout_s: float = REDIS_TIMEOUT_S, cluster: bool = False
    ) -> None:
        from churnfs.store.redis_servers import RedisPing

        self.address = describe_redis(connection_string)
        self._ping = RedisPing(connection_string, cluster=cluster, timeout_s=timeout_s)

    def ping(self) -> tuple[bool, str, float | None]:
        """(reachable, detail, round trip in ms)."""
        start = time.perf_counter()
        problem = self._ping.problem()
        if problem is not None:
            return False, problem, None
        kind = "Redis Cluster" if self._ping.cluster else "Redis"
        return True, f"{kind} at {self.address} answers", (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self._ping.close()


def tune_feast_redis_client(store: Any, timeout_s: float = REDIS_TIMEOUT_S) -> bool:
    """Cap the retries and timeouts of the Redis client inside Feast's online store.

    Feast creates the redis-py client lazily with the library's default retry policy; there is no
    configuration knob for it, so reach it once through the provider and set one immediate retry
    (which reconnects after a Redis restart) and short socket timeouts. On a Redis Cluster the
    same goes for the cluster client (its default retries back off for seconds) and for the
    connection settings of every node it knows or will discover. Returns False when the online
    store is not Redis."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        online_store = store._get_provider().online_store
    except AttributeError:
        return False
    if not isinstance(online_store, RedisOnlineStore):
        return False
    client = online_store._get_client(store.config.online_store)
    client.set_retry(Retry(NoBackoff(), 1))
    if is_cluster(store.config.online_store):
        # New nodes take nodes_manager's settings; known nodes have their own pools.
        pools = [
            node.redis_connection.connection_pool for node in client.get_nodes() if node.redis_connection
        ]
        all_kwargs = [client.nodes_manager.connection_kwargs, *(pool.connection_kwargs for pool in pools)]
    else:
        all_kwargs = [client.connection_pool.connection_kwargs]
    for kwargs in all_kwargs:
        kwargs.setdefault("socket_connect_timeout", timeout_s)
        if kwargs.get("socket_timeout") is None:
            kwargs["socket_timeout"] = timeout_s
    return True


def _redis_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable Redis raises; on a cluster also a dead node's slots (CLUSTERDOWN, slots
    not covered) and redis-py's own cluster errors."""
    import redis

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ClusterError,
        redis.exceptions.RedisClusterException,
        ConnectionError,
        TimeoutError,
    )


@dataclass
class OnlineFeatures:
    """Feast's ``get_online_features`` for one feature service, behind a circuit breaker."""

    store: Any
    service: Any
    layout: FeatureLayout
    probe: RedisProbe | None
    retry_after_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _down_since: float | None = field(default=None, init=False)
    _next_probe: float = field(default=0.0, init=False)
    _last_error: str = field(default="", init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def is_up(self) -> bool:
        return self._down_since is None

    @property
    def last_error(self) -> str:
        return self._last_error

    def mark_down(self, reason: str) -> None:
        with self._lock:
            if self._down_since is None:
                logger.warning("online store down, answering from the offline store: %s", reason)
                self._down_since = self.clock()
            self._next_probe = self.clock() + self.retry_after_s
            self._last_error = reason

    def mark_up(self) -> None:
        with self._lock:
            if self._down_since is not None:
                logger.info("online store back after %.1f s", self.clock() - self._down_since)
            self._down_since = None
            self._last_error = ""

    def check(self) -> tuple[bool, str, float | None]:
        """Ping now and update the breaker (health uses this)."""
        if self.probe is None:
            return True, "online store is not Redis; no ping", None
        ok, detail, latency = self.probe.ping()
        if ok:
            self.mark_up()
        else:
            self.mark_down(detail)
        return ok, detail, latency

    def _available(self) -> bool:
        if self._down_since is None:
            return True
        if self.clock() < self._next_probe:
            return False
        return self.check()[0]

    def read(self, user_ids: Sequence[int]) -> list[dict[str, ViewRow | None]]:
        """Each user's rows per view (None where the online store has nothing for that view).

        Raises OnlineStoreUnavailableError when Redis cannot be reached (now or recently)."""
        if not self._available():
            raise OnlineStoreUnavailableError(self._last_error or "online store unreachable")
        try:
            response = self.store.get_online_features(
                features=self.service, entity_rows=[{"user_id": int(u)} for u in user_ids]
            )
            columns = response.to_dict(include_event_timestamps=True)
        except _redis_errors() as exc:
            self.mark_down(f"Redis read failed: {exc}")
            raise OnlineStoreUnavailableError(self._last_error) from None
        return rows_from_online_columns(columns, self.layout, len(user_ids))


def rows_from_online_columns(
    columns: dict[str, list[Any]], layout: FeatureLayout, count: int
) -> list[dict[str, ViewRow | None]]:
    """Split Feast's column dict (``to_dict(include_event_timestamps=True)``) into per-user,
    per-view rows; a view whose every feature is None counts as absent."""
    out: list[dict[str, ViewRow | None]] = []
    for i in range(count):
        views: dict[str, ViewRow | None] = {}
        for view, names in layout.views.items():
            values = {name: columns[name][i] for name in names}
            if all(v is None for v in values.values()):
                views[view] = None
                continue
            seconds = max((columns.get(f"{name}__ts", [0] * count)[i] or 0) for name in names)
            views[view] = (datetime.fromtimestamp(seconds, UTC) if seconds else None, values)
        out.append(views)
    return out
