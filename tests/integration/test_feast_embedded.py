"""The laptop default: a private redis-server under DATA_DIR when nothing answers, else SQLite."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from churnfs.settings import Settings
from churnfs.store import get_store, load_repo_config
from churnfs.store.embedded import start_embedded_online_store, stop_embedded_online_store
from churnfs.store.errors import OnlineStoreUnavailableError

pytestmark = pytest.mark.integration


def _unused_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_nothing_is_started_when_the_configured_redis_answers(
    tmp_path: Path, redis_connection_string: str
) -> None:
    settings = Settings(data_dir=tmp_path, redis_connection_string=redis_connection_string)
    assert start_embedded_online_store(settings) is None
    assert not (tmp_path / "online_store").exists()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_private_redis_serves_the_world_until_stopped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_connection_string=_unused_address())
    store = start_embedded_online_store(settings)
    try:
        assert store is not None and store.kind == "redis"
        assert (tmp_path / "online_store" / "embedded.json").exists()
        assert start_embedded_online_store(settings) == store  # a second `up` reuses it
        config = get_store(settings).config  # pings it
        assert config.online_store.connection_string == store.connection_string
    finally:
        stopped = stop_embedded_online_store(settings)
    assert stopped == store
    with pytest.raises(ProcessLookupError):
        os.kill(store.pid, 0)
    assert not (tmp_path / "online_store" / "embedded.json").exists()
    with pytest.raises(OnlineStoreUnavailableError, match="does not answer"):
        get_store(settings)


def test_sqlite_fallback_without_a_redis_server_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("churnfs.store.embedded.shutil.which", lambda name: None)
    settings = Settings(data_dir=tmp_path, redis_connection_string=_unused_address())
    store = start_embedded_online_store(settings)
    assert store is not None and store.kind == "sqlite"
    config = load_repo_config(settings)
    assert config.online_store.type == "sqlite"
    assert Path(config.online_store.path) == (tmp_path / "online_store" / "online_store.db").resolve()
    assert stop_embedded_online_store(settings) == store
    assert load_repo_config(settings).online_store.connection_string == settings.redis_connection_string
