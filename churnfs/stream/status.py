"""``churnfs stream status``: the stream's length, the group's lag and pending entries, each
consumer's pending entries and idle time, and the stream's clock."""

from __future__ import annotations

from typing import Any

from churnfs.settings import Settings
from churnfs.store.redis_servers import redis_client
from churnfs.stream.consumer import clock_key


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def group_info(client: Any, settings: Settings) -> dict[str, Any] | None:
    """XINFO GROUPS of the consumer group (``lag``: entries not yet delivered, ``pending``:
    delivered, not acknowledged); None when the stream or the group does not exist."""
    import redis

    try:
        groups = client.xinfo_groups(settings.stream_key)
    except redis.ResponseError:  # no such key
        return None
    for group in groups:
        if _text(group.get("name")) == settings.stream_group:
            return {str(_text(k)): _text(v) for k, v in group.items()}
    return None


def group_lag(client: Any, settings: Settings) -> dict[str, Any] | None:
    """The consumer group's lag for ``/health`` and the metrics: ``lag`` (not yet delivered),
    ``pending`` (delivered, not acknowledged), ``unacknowledged`` (both) and ``consumers``; None
    when there is no group."""
    group = group_info(client, settings)
    if group is None:
        return None
    lag = group.get("lag")
    lag = int(lag) if lag is not None else int(client.xlen(settings.stream_key))
    pending = int(group.get("pending", 0))
    return {
        "group": settings.stream_group,
        "lag": lag,
        "pending": pending,
        "unacknowledged": lag + pending,
        "consumers": int(group.get("consumers", 0)),
    }


def stream_status(settings: Settings) -> dict[str, Any]:
    """What ``churnfs stream status`` prints (and ``/health`` could report)."""
    client = redis_client(settings.redis_connection_string)
    length = int(client.xlen(settings.stream_key))
    group = group_info(client, settings)
    clock = client.get(clock_key(settings))
    out: dict[str, Any] = {
        "stream": settings.stream_key,
        "entries": length,
        "group": settings.stream_group,
        "clock": _text(clock) if clock else None,
    }
    if group is None:
        out.update({"lag": None, "pending": None, "consumers": []})
        return out
    lag = group.get("lag")
    consumers = client.xinfo_consumers(settings.stream_key, settings.stream_group)
    out.update(
        {
            # lag is null when Redis cannot tell (entries deleted); every entry then counts
            "lag": int(lag) if lag is not None else length,
            "pending": int(group.get("pending", 0)),
            "last delivered": group.get("last-delivered-id"),
            "consumers": [
                {"name": _text(c["name"]), "pending": int(c["pending"]), "idle_ms": int(c["idle"])}
                for c in consumers
            ],
        }
    )
    return out
