"""feature_store.yaml's registry path: an unset ${DATA_DIR} means Settings' default, never a folder
literally named ``${DATA_DIR}``; any other unresolved variable is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from feast.repo_config import RegistryConfig

from churnfs.store.errors import FeatureStoreConfigError
from churnfs.store.registry import ChurnFileRegistryStore, resolve_registry_path


def test_an_unset_data_dir_becomes_the_settings_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATA_DIR", raising=False)
    assert resolve_registry_path("${DATA_DIR}/registry.db") == "data/registry.db"
    monkeypatch.setenv("DATA_DIR", "/srv/worlds/a")
    assert resolve_registry_path("${DATA_DIR}/registry.db") == "/srv/worlds/a/registry.db"
    assert resolve_registry_path("/already/expanded/registry.db") == "/already/expanded/registry.db"


def test_another_unresolved_variable_is_refused_naming_it() -> None:
    with pytest.raises(FeatureStoreConfigError, match=r"\$\{REGISTRY_BUCKET\}.*export REGISTRY_BUCKET"):
        resolve_registry_path("${REGISTRY_BUCKET}/registry.db")


def test_the_store_writes_under_the_repository_and_creates_no_placeholder_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    monkeypatch.delenv("DATA_DIR", raising=False)
    config = RegistryConfig(path="${DATA_DIR}/registry.db", registry_type="file")
    store = ChurnFileRegistryStore(config, tmp_path)
    store.update_registry_proto(RegistryProto(registry_schema_version="7"))
    assert (tmp_path / "data" / "registry.db").is_file()
    assert store.get_registry_proto().registry_schema_version == "7"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
