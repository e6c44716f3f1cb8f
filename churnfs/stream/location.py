"""Which Redis server the stream lives on: the one this world's online store uses.

``churnfs online-store up`` may have recorded a private redis-server under ``DATA_DIR``
(``churnfs.store.embedded``); every later command on that world reads and writes the online store
there, so the stream, its consumer group and its clock live there too. Without a record the stream
is on ``REDIS_CONNECTION_STRING``.
"""

from __future__ import annotations

from churnfs.errors import InvalidInputError
from churnfs.settings import Settings


def stream_settings(settings: Settings) -> Settings:
    """``settings`` on the Redis server of this world's online store: the private one recorded
    under ``DATA_DIR``, if any.

    Raises:
        InvalidInputError: the world's recorded store is a cluster or SQLite (the stream needs one
            Redis server).
        OnlineStoreUnavailableError: the recorded private server does not answer.
    """
    from churnfs.store.embedded import load_embedded_online_store

    record = load_embedded_online_store(settings)
    if record is None:
        return settings
    if record.kind != "redis":
        raise InvalidInputError(
            f"the stream needs one Redis server, and this world's online store is {record.describe()}: "
            "run `churnfs online-store down`, then point REDIS_CONNECTION_STRING at a Redis server"
        )
    return settings.model_copy(update={"redis_connection_string": record.connection_string})
