"""The Redis online store as feature_store.yaml names it: Feast's own, with a safe default.

Feast expands ``${VAR}`` in feature_store.yaml with ``os.path.expandvars``, which has no default
syntax and leaves an unset variable as the literal text ``${VAR}``. This subclass maps such a
left-over placeholder to the churnfs default (``Settings().redis_connection_string``), so a bare
``feast apply`` on a laptop talks to the local Redis instead of failing on a host called
``${REDIS_CONNECTION_STRING}``. Reads and writes are Feast's, unchanged: same keys, same values.
"""

from __future__ import annotations

from typing import Literal

from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from pydantic import field_validator

ONLINE_STORE_TYPE = "churnfs.store.online.ChurnRedisOnlineStore"


class ChurnRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Feast's Redis config; an unexpanded ``${...}`` connection string means "the default"."""

    type: Literal["churnfs.store.online.ChurnRedisOnlineStore"] = ONLINE_STORE_TYPE  # type: ignore[assignment]

    @field_validator("connection_string", mode="before")
    @classmethod
    def _default_for_unset_variable(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().startswith("${"):
            from churnfs.settings import Settings

            return Settings().redis_connection_string
        return value


class ChurnRedisOnlineStore(RedisOnlineStore):
    """Feast's RedisOnlineStore (the key and value format churnfs.store.codec writes)."""
