"""Online reads through Feast, guarded by a circuit breaker on Redis.

Feast's Redis client retries a refused connection three times with exponential back-off (up to
about 14 s per call with redis-py's defaults), which would turn an outage into stalled
requests. So the service (1) caps that client's retries and timeouts, and (2) after a
failure stops calling Redis at all, answering from the offline store, until a cheap ``PING``
(at most one per ``retry_after_s``) says Redis is back: then Feast is used again, no restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
    parts = [p.strip() for p in connection_string.split(",") if p.strip()]
    hosts = [p for p in parts if "=" not in p]
    if not hosts:
        raise ValueError(f"no host:port in the Redis connection string {connection_string!r}")
    host, _, port = hosts[0].rpartition(":") if ":" in hosts[0] else (hosts[0], "", "6379")
    out: dict[str, Any] = {"host": host or "127.0.0.1", "port": int(port or 6379)}
    for part in parts:
        if "=" not in part:
            continue
        key, value = part.split("=", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if key in {"db", "password", "username", "ssl"}:
            out[key] = parsed
    return out


def describe_redis(connection_string: str) -> str:
    """``host:port/db`` of a connection string, without secrets (for health and logs)."""
    try:
        kw = parse_redis_connection_string(connection_string)
    except ValueError:
        return "invalid connection string"
    return f"{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


class RedisProbe:
    """A cheap, non-retrying ``PING`` with a short timeout."""

    def __init__(self, connection_string: str, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.address = describe_redis(connection_string)
        self._client = redis.Redis(
            **parse_redis_connection_string(connection_string),
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def ping(self) -> tuple[bool, str, float | None]:
        """(reachable, detail, round trip in ms)."""
        start = time.perf_counter()
        try:
            self._client.ping()
        except Exception as exc:
            return False, f"Redis at {self.address} unreachable: {exc}", None
        return True, f"Redis at {self.address} answers", (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self._client.close()


def tune_feast_redis_client(store: Any, timeout_s: float = REDIS_TIMEOUT_S) -> bool:
    """Cap the retries and timeouts of the Redis client inside Feast's online store.

    Feast creates the redis-py client lazily with the library's default retry policy; there is no
    configuration knob for it, so reach it once through the provider and set one immediate retry
    (which reconnects after a Redis restart) and short socket timeouts. Returns False when the
    online store is not Redis."""
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
    kwargs = client.connection_pool.connection_kwargs
    kwargs.setdefault("socket_connect_timeout", timeout_s)
    if kwargs.get("socket_timeout") is None:
        kwargs["socket_timeout"] = timeout_s
    return True


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, TimeoutError)


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
