"""Store construction from Settings: feature_store.yaml expansion, clear errors, repo discovery."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from churnfs.settings import PROJECT_ROOT, Settings
from churnfs.store.errors import FeatureStoreConfigError
from churnfs.store.online import ChurnRedisOnlineStoreConfig
from churnfs.store.repo import load_repo_config, repo_modules


def test_config_takes_registry_and_redis_from_settings_not_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", "/somewhere/else")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "elsewhere:1")
    settings = Settings(data_dir=tmp_path / "world", redis_connection_string="10.1.2.3:6380,db=4")
    config = load_repo_config(settings)
    assert Path(config.registry.path) == (tmp_path / "world" / "registry.db").resolve()
    assert config.online_store.connection_string == "10.1.2.3:6380,db=4"
    assert config.project == "churnfs"
    assert config.entity_key_serialization_version == 3
    assert config.offline_store.type == "churnfs.store.offline.PartsDuckDBOfflineStore"


def test_unset_redis_variable_falls_back_to_the_settings_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_CONNECTION_STRING", raising=False)
    config = ChurnRedisOnlineStoreConfig(connection_string="${REDIS_CONNECTION_STRING}")
    assert config.connection_string == "127.0.0.1:6379"
    assert (
        ChurnRedisOnlineStoreConfig(connection_string="redis:6379,db=2").connection_string
        == "redis:6379,db=2"
    )


def test_redis_type_comes_from_settings_and_defaults_to_one_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_TYPE", raising=False)
    cluster = Settings(
        data_dir=tmp_path / "world",
        redis_connection_string="a:7000,b:7001,c:7002",
        redis_type="redis_cluster",
    )
    assert load_repo_config(cluster).online_store.redis_type == "redis_cluster"
    assert load_repo_config(Settings(data_dir=tmp_path / "world")).online_store.redis_type == "redis"
    assert ChurnRedisOnlineStoreConfig(redis_type="${REDIS_TYPE}").redis_type == "redis"
    monkeypatch.setenv("REDIS_TYPE", "redis_cluster")
    assert ChurnRedisOnlineStoreConfig(redis_type="${REDIS_TYPE}").redis_type == "redis_cluster"


def _repo_with_yaml(tmp_path: Path, text: str) -> Settings:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(text)
    return Settings(data_dir=tmp_path / "world", feast_repo_path=repo)


def test_yaml_that_does_not_parse_gives_one_clear_error(tmp_path: Path) -> None:
    settings = _repo_with_yaml(tmp_path, "project: churnfs\nregistry: [unclosed\n")
    with pytest.raises(FeatureStoreConfigError, match="is not valid YAML"):
        load_repo_config(settings)


def test_invalid_feast_setting_names_the_field(tmp_path: Path) -> None:
    text = (
        (PROJECT_ROOT / "feature_store.yaml")
        .read_text()
        .replace("entity_key_serialization_version: 3", "entity_key_serialization_version: three")
    )
    settings = _repo_with_yaml(tmp_path, text)
    with pytest.raises(FeatureStoreConfigError, match="entity_key_serialization_version"):
        load_repo_config(settings)


def test_missing_feature_store_yaml_says_where_it_looked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, feast_repo_path=tmp_path / "nowhere")
    with pytest.raises(FeatureStoreConfigError, match=r"no feature_store\.yaml"):
        load_repo_config(settings)


def test_repo_modules_are_the_files_feast_apply_imports(tmp_path: Path) -> None:
    from churnfs.store.repo_files import feast_get_repo_files as get_repo_files  # Feast's own

    assert get_repo_files is not None
    repo = tmp_path / "repo"
    for path in ["feature_repo/a.py", "feature_repo/__init__.py", "feature_repo/sub/b.py", "code/c.py",
                 "notes/d.py", "tests/deep/e.py", "top.py"]:  # fmt: skip
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("")
    (repo / ".feastignore").write_text("# comment\ncode/\nnotes\ntests/\n")
    expected = sorted(
        ".".join(p.relative_to(repo.resolve()).with_suffix("").parts) for p in get_repo_files(repo)
    )
    assert repo_modules(repo) == expected == ["feature_repo.a", "feature_repo.sub.b", "top"]


def test_the_repository_exposes_only_feature_repo_to_feast() -> None:
    assert repo_modules(PROJECT_ROOT) == [
        "feature_repo.data_sources",
        "feature_repo.entities",
        "feature_repo.feature_services",
        "feature_repo.feature_views",
    ]


def test_repo_objects_are_rooted_in_the_settings_world(tmp_path: Path) -> None:
    from feast import FeatureView

    from churnfs.store.repo import repo_objects

    settings = Settings(data_dir=tmp_path / "other-world")
    views = {o.name: o for o in repo_objects(settings) if isinstance(o, FeatureView)}
    expected_dir = (tmp_path / "other-world" / "offline_store").resolve()
    assert (
        Path(views["user_activity_features"].batch_source.path)
        == expected_dir / "user_activity_features.parquet"
    )
    assert Path(views["churn_labels"].batch_source.path) == expected_dir / "churn_labels.parquet"
    # the declarations themselves are untouched (a second world in the same process)
    assert "other-world" not in shutil.os.fspath(
        __import__("feature_repo.data_sources", fromlist=["x"]).user_activity_source.path
    )
