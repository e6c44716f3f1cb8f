"""Every private attribute of Feast, redis-py and MLflow that churnfs uses (docs/private-apis.md)
still exists, still accepts the call churnfs makes, and, where cheap, still returns what churnfs
reads. A failure names the attribute, so an upgrade that changes one says which and where."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DOC = "docs/private-apis.md"


@dataclass(frozen=True)
class PrivateCall:
    """A private callable and how churnfs calls it: positional arguments (after ``self`` for a
    method looked up on its class) and keyword names."""

    owner: str  # module, or module:Class
    name: str
    where: str
    positional: int = 0
    keywords: tuple[str, ...] = field(default_factory=tuple)
    method: bool = False

    @property
    def label(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.name}"


CALLS = [
    PrivateCall(
        "feast.infra.compute_engines.local.compute:LocalComputeEngine",
        "_materialize_one",
        "churnfs/store/engine.py",
        positional=2,
        keywords=("any_option",),  # churnfs passes on whatever **kwargs materialize received
        method=True,
    ),
    PrivateCall(
        "feast.infra.online_stores.redis:RedisOnlineStore",
        "_get_client",
        "churnfs/store/engine.py, serving/online.py",
        positional=1,
        method=True,
    ),
    PrivateCall(
        "feast.infra.online_stores.redis", "_versioned_fv_name", "churnfs/store/online.py", positional=2
    ),
    PrivateCall(
        "feast.infra.online_stores.redis:RedisOnlineStore",
        "_generate_hset_keys_for_features",
        "churnfs/store/online.py",
        positional=2,
        keywords=("fv_name_override",),
        method=True,
    ),
    PrivateCall(
        "feast.infra.online_stores.redis:RedisOnlineStore",
        "_read_hash_fields",
        "churnfs/store/online.py",
        positional=2,
        method=True,
    ),
    PrivateCall(
        "feast.infra.online_stores.redis:RedisOnlineStore",
        "_convert_redis_values_to_protobuf",
        "churnfs/store/online.py",
        positional=3,
        method=True,
    ),
    PrivateCall(
        "feast.infra.online_stores.online_store:OnlineStore",
        "_check_versioned_read_support",
        "churnfs/store/online.py",
        positional=1,
        method=True,
    ),
    PrivateCall(
        "feast.infra.online_stores.online_store:OnlineStore",
        "_build_feature_types",
        "churnfs/store/online.py",
        positional=1,
    ),
    PrivateCall(
        "feast.utils",
        "_prepare_entities_to_read_from_online_store",
        "churnfs/store/online.py",
        keywords=(
            "registry",
            "project",
            "features",
            "entity_values",
            "full_feature_names",
            "native_entity_values",
        ),
    ),
    PrivateCall("feast.utils", "_get_table_entity_values", "churnfs/store/online.py", positional=3),
    PrivateCall("feast.utils", "_get_unique_entities", "churnfs/store/online.py", positional=3),
    PrivateCall(
        "feast.utils", "_populate_response_from_feature_data", "churnfs/store/online.py", positional=7
    ),
    PrivateCall("feast.utils", "_drop_unneeded_columns", "churnfs/store/online.py", positional=2),
    PrivateCall(
        "feast.infra.offline_stores.duckdb", "_read_data_source", "churnfs/store/offline.py", positional=2
    ),
    # Passed to Feast's ibis functions, which call it as data_source_writer(table, source, repo_path).
    PrivateCall(
        "feast.infra.offline_stores.duckdb", "_write_data_source", "churnfs/store/offline.py", positional=3
    ),
    PrivateCall("feast.infra.online_stores.helpers", "_mmh3", "churnfs/store/codec.py", positional=1),
    PrivateCall(
        "feast.infra.online_stores.helpers",
        "_redis_key",
        "churnfs/store/codec.py",
        positional=2,
        keywords=("entity_key_serialization_version",),
    ),
    PrivateCall("feast.utils", "_convert_arrow_to_proto", "churnfs/store/codec.py", positional=3),
    PrivateCall(
        "feast.feature_store:FeatureStore",
        "_get_provider",
        "churnfs/store/repo.py, serving/online.py",
        method=True,
    ),
]


def _resolve(call: PrivateCall) -> Any:
    module_name, _, class_name = call.owner.partition(":")
    owner: Any = importlib.import_module(module_name)
    if class_name:
        owner = getattr(owner, class_name)
    if not hasattr(owner, call.name):
        pytest.fail(f"{call.label} is gone (used by {call.where}): see {DOC}")
    return getattr(owner, call.name)


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.label)
def test_private_callable_still_accepts_the_call_churnfs_makes(call: PrivateCall) -> None:
    target = _resolve(call)
    assert callable(target), f"{call.label} is no longer callable (used by {call.where}): see {DOC}"
    args: list[Any] = [object()] * (call.positional + (1 if call.method else 0))
    try:
        inspect.signature(target).bind(*args, **dict.fromkeys(call.keywords))
    except TypeError as exc:
        pytest.fail(
            f"{call.label}{inspect.signature(target)} no longer accepts churnfs's call "
            f"({call.positional} positional, keywords {list(call.keywords)}; used by {call.where}): "
            f"{exc}; see {DOC}"
        )


def test_feast_parse_repo_still_lists_files_through_get_repo_files() -> None:
    import feast.repo_operations as repo_operations

    from churnfs.store import repo_files

    where = "churnfs/store/repo_files.py, installed by churnfs/store/offline.py"
    feasts = repo_files.feast_get_repo_files
    assert feasts is not None and feasts.__module__ == "feast.repo_operations", (
        f"feast.repo_operations.get_repo_files is gone ({where}): `feast apply` walks .venv/ again; see {DOC}"
    )
    try:
        inspect.signature(feasts).bind(object())
        inspect.signature(repo_operations.read_feastignore).bind(object())
    except (TypeError, AttributeError) as exc:
        pytest.fail(
            f"feast.repo_operations.get_repo_files(repo_root) or read_feastignore(repo_root) changed "
            f"({where}): {exc}; see {DOC}"
        )
    assert repo_files.feast_lists_with_get_repo_files(), (
        "feast.repo_operations.parse_repo no longer looks get_repo_files up as a module global, so "
        f"replacing it has no effect ({where}): `feast apply` walks .venv/ again; see {DOC}"
    )


def test_feast_get_repo_files_still_ignores_exactly_these_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feast.repo_operations as repo_operations

    from churnfs.store.repo_files import FEAST_DEFAULT_IGNORES, feast_get_repo_files

    assert feast_get_repo_files is not None
    passed: list[list[str]] = []
    get_ignore_files = getattr(repo_operations, "get_ignore_files", None)
    if get_ignore_files is None:
        pytest.fail(f"feast.repo_operations.get_ignore_files is gone: re-read get_repo_files; see {DOC}")

    def recording(repo_root: Path, ignore_paths: list[str]) -> Any:
        passed.append(list(ignore_paths))
        return get_ignore_files(repo_root, ignore_paths)

    monkeypatch.setattr(repo_operations, "get_ignore_files", recording)
    feast_get_repo_files(tmp_path)  # no .feastignore: only Feast's own defaults
    assert passed == [list(FEAST_DEFAULT_IGNORES)], (
        f"feast.repo_operations.get_repo_files now ignores {passed} besides .feastignore, not "
        f"{list(FEAST_DEFAULT_IGNORES)}: update FEAST_DEFAULT_IGNORES in churnfs/store/repo_files.py; "
        f"see {DOC}"
    )


def _user_view() -> Any:
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Float64

    user = Entity(name="user", join_keys=["user_id"])
    source = FileSource(path="user.parquet", timestamp_field="event_timestamp")
    return FeatureView(name="v", entities=[user], schema=[Field(name="f", dtype=Float64)], source=source)


def test_feast_hash_fields_are_still_mmh3_of_view_and_feature_plus_a_timestamp_field() -> None:
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import RedisOnlineStore

    names, fields = RedisOnlineStore()._generate_hset_keys_for_features(
        _user_view(), ["f"], fv_name_override="v"
    )
    assert (names, fields) == (["f", "_ts:v"], [_mmh3("v:f"), "_ts:v"]), (
        "RedisOnlineStore._generate_hset_keys_for_features no longer returns (names + ['_ts:<view>'], "
        f"[_mmh3('<view>:<feature>'), ..., '_ts:<view>']): the bulk engine's writes and the columnar "
        f"read (churnfs/store/codec.py, online.py) assume it; see {DOC}"
    )


def test_unversioned_view_still_hashes_under_its_own_name() -> None:
    from feast import RepoConfig
    from feast.infra.online_stores.redis import _versioned_fv_name

    config = RepoConfig(
        project="p", registry="registry.db", provider="local", entity_key_serialization_version=3
    )
    name = _versioned_fv_name(_user_view(), config)
    assert name == "v", f"_versioned_fv_name of an unversioned view is {name!r}, not its name; see {DOC}"


def test_online_response_still_keeps_feature_types_and_builds_frames_from_to_dict() -> None:
    from feast.online_response import OnlineResponse
    from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

    response = OnlineResponse(GetOnlineFeaturesResponse())
    assert hasattr(response, "_feature_types"), (
        "OnlineResponse no longer sets _feature_types, which ColumnarOnlineResponse sets in its "
        f"place; see {DOC}"
    )

    class Columns(OnlineResponse):
        def __init__(self) -> None:  # like ColumnarOnlineResponse: no protobuf at all
            self._feature_types = {}

        def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
            return {"user_id": [1, 2], "f": [0.5, None]}

    columns = Columns()
    frame = columns.to_df()
    assert frame["user_id"].tolist() == [1, 2], (
        f"OnlineResponse.to_df no longer builds on to_dict (ColumnarOnlineResponse relies on it); see {DOC}"
    )
    assert columns.to_arrow().column_names == ["user_id", "f"], (
        "OnlineResponse.to_arrow no longer builds on to_dict (ColumnarOnlineResponse relies on "
        f"it); see {DOC}"
    )


def test_feast_provider_still_exposes_online_store_and_batch_engine() -> None:
    from feast.infra.passthrough_provider import PassthroughProvider

    for name in ("online_store", "batch_engine"):
        assert isinstance(inspect.getattr_static(PassthroughProvider, name, None), property), (
            f"PassthroughProvider.{name} (reached through FeatureStore._get_provider() by "
            f"churnfs/store/repo.py and serving/online.py) is gone; see {DOC}"
        )


def test_redis_connection_still_keeps_its_socket_in_sock() -> None:
    import redis

    connection = redis.Connection()
    assert hasattr(connection, "_sock") and connection._sock is None, (
        "redis.Connection no longer keeps its socket in _sock (churnfs/store/resp.py reads raw "
        f"replies from it); see {DOC}"
    )
    assert callable(getattr(connection, "send_packed_command", None))


def test_redis_cluster_still_keeps_its_slot_map_and_node_pools_in_the_nodes_manager() -> None:
    from redis.cluster import ClusterNode, NodesManager, RedisCluster

    where = "churnfs/store/resp.py (ClusterWriter) and serving/online.py (tune_feast_redis_client)"
    assert "self.nodes_manager = NodesManager(" in inspect.getsource(RedisCluster.__init__), (
        f"RedisCluster no longer keeps its NodesManager in nodes_manager ({where}); see {DOC}"
    )
    setup = inspect.getsource(NodesManager)
    for attribute in ("slots_cache", "connection_kwargs"):
        assert f"self.{attribute} =" in setup, f"NodesManager no longer sets {attribute} ({where}); see {DOC}"
    assert list(inspect.signature(NodesManager.create_redis_connections).parameters) == ["self", "nodes"], (
        f"NodesManager.create_redis_connections(nodes) changed (churnfs/store/resp.py); see {DOC}"
    )
    assert ClusterNode("127.0.0.1", 7000).redis_connection is None, (
        f"ClusterNode no longer has redis_connection ({where}); see {DOC}"
    )


def test_mlflow_pyfunc_model_impl_is_still_what_the_loader_returned() -> None:
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    class Runtime:
        def predict(self, model_input: Any, params: Any = None) -> Any:
            return model_input

    runtime = Runtime()
    pyfunc = PyFuncModel(model_meta=Model(), model_impl=runtime)
    try:
        found = pyfunc._model_impl
    except AttributeError:
        pytest.fail(f"PyFuncModel._model_impl is gone (serving/model.py fast_path_of reads it); see {DOC}")
    assert found is runtime, (
        "PyFuncModel._model_impl is no longer the loader's object, where the registered runtime "
        f"defines predict_rows (serving/model.py); see {DOC}"
    )
