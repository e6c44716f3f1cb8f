"""The small world applied and materialized into a real Redis: registry, read-back, Feast's bytes,
the consistency check catching a corrupted value, and clear errors."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
import typer
from feast import FeatureStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Bool, Float32, Float64, Int64, String
from typer.testing import CliRunner

from churnfs.cli import _clean_errors
from churnfs.settings import PROJECT_ROOT, Settings
from churnfs.store import check_consistency, get_store, materialize
from churnfs.store.codec import entity_keys_int64, field_key
from churnfs.store.commands import check_consistency_command
from churnfs.store.errors import OnlineStoreUnavailableError
from churnfs.world import load_world_spec
from tests.conftest import free_port

pytestmark = pytest.mark.integration

SERVED_VIEWS = ["user_activity_features", "user_profile_features", "user_review_features"]
ONLINE_VIEWS = sorted([*SERVED_VIEWS, "user_review_embeddings"])


def _client(settings: Settings) -> redis.Redis:
    host_port, _, rest = settings.redis_connection_string.partition(",")
    host, _, port = host_port.partition(":")
    db = int(dict(p.split("=") for p in rest.split(",") if p).get("db", 0))
    return redis.Redis(host=host, port=int(port), db=db)


def _key(user_id: int, project: str = "churnfs") -> bytes:
    return entity_keys_int64(np.array([user_id]), "user_id", project)[0].tobytes()


@pytest.fixture(scope="module")
def store(feast_world: Settings) -> FeatureStore:
    return get_store(feast_world)


def _offline_latest(settings: Settings, view: str) -> pd.DataFrame:
    """The latest offline row per user at or before the world's end, computed with pandas."""
    end = load_world_spec(settings.raw_dir).end
    frame = pq.read_table(settings.offline_store_dir / f"{view}.parquet").to_pandas(ignore_metadata=True)
    frame = frame[frame["event_timestamp"] <= pd.Timestamp(end)]
    frame = frame.sort_values(["user_id", "event_timestamp", "created_timestamp"])
    return frame.groupby("user_id").tail(1).set_index("user_id")


def test_registry_holds_views_typed_by_the_contract_with_descriptions_and_owners(store: FeatureStore) -> None:
    views = {fv.name: fv for fv in store.list_feature_views()}
    assert set(views) == {*ONLINE_VIEWS, "churn_labels"}
    for fv in views.values():
        assert fv.description and fv.owner and fv.tags, fv.name
        assert all(f.description for f in fv.features), fv.name
    assert not views["churn_labels"].online and all(views[v].online for v in ONLINE_VIEWS)
    types = {f.name: f.dtype for fv in views.values() for f in fv.features}
    assert types["age"] == Int64 and types["gender"] == String and types["premium"] == Bool
    assert types["income"] == Float64 and types["activity_trend"] == Float64
    assert types["categorical_event_vector"] == Array(Float32)
    assert types["review_embedding"] == Array(Float32) and types["topic_vector"] == Array(Float32)
    assert len(views["user_activity_features"].features) == 16
    assert len(views["user_review_features"].features) == 9
    assert [f.name for f in views["user_review_embeddings"].features] == ["review_embedding"]
    assert views["user_review_embeddings"].ttl == timedelta(0)  # event-sourced: no expiry
    (entity,) = store.list_entities()
    assert entity.join_key == "user_id" and entity.description and entity.owner
    push_sources = {s.name for s in store.list_data_sources() if type(s).__name__ == "PushSource"}
    assert push_sources == {
        "user_profile_push",
        "user_activity_push",
        "user_review_push",
        "user_review_embeddings_push",
    }


def test_churn_model_v1_serves_every_feature_but_the_raw_review_embedding(store: FeatureStore) -> None:
    service = store.get_feature_service("churn_model_v1")
    served = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
    assert set(served) == set(SERVED_VIEWS)
    assert "review_embedding" not in {f for features in served.values() for f in features}
    assert {"topic_vector", "sentiment_score"} <= set(served["user_review_features"])
    assert len(served["user_profile_features"]) == 7 and len(served["user_activity_features"]) == 16
    assert service.description and service.owner


def test_get_online_features_returns_the_offline_values_of_every_user(
    feast_world: Settings, store: FeatureStore
) -> None:
    for view_name in ONLINE_VIEWS:
        view = store.get_feature_view(view_name)
        expected = _offline_latest(feast_world, view_name)
        users = expected.index.tolist()
        names = [f.name for f in view.features]
        online = store.get_online_features(
            features=[f"{view_name}:{n}" for n in names], entity_rows=[{"user_id": u} for u in users]
        ).to_dict()
        assert online["user_id"] == users
        for name in names:
            got, want = online[name], expected[name].tolist()
            if isinstance(want[0], np.ndarray):
                assert all(
                    np.array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))
                    for g, w in zip(got, want, strict=True)
                ), name
            else:
                assert got == want, f"{view_name}.{name}"


def _reference_settings(feast_world: Settings, tmp_path: Path) -> Settings:
    """A copy of the repository configured with Feast's defaults (``redis`` store, local engine)
    under another project name, so its keys live beside ours in the same database."""
    import yaml

    repo = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "feature_repo", repo / "feature_repo")
    shutil.copy(PROJECT_ROOT / ".feastignore", repo / ".feastignore")
    config = yaml.safe_load((PROJECT_ROOT / "feature_store.yaml").read_text())
    config["project"] = "churnfs_reference"
    config["online_store"] = {"type": "redis", "connection_string": "${REDIS_CONNECTION_STRING}"}
    config.pop("batch_engine")
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    world = tmp_path / "world"
    world.mkdir()
    (world / "offline_store").symlink_to(feast_world.offline_store_dir.resolve())
    (world / "raw").symlink_to(feast_world.raw_dir.resolve())
    return feast_world.model_copy(update={"data_dir": world, "feast_repo_path": repo})


def test_bulk_engine_writes_exactly_the_bytes_of_feasts_own_engine(
    feast_world: Settings, tmp_path: Path
) -> None:
    from churnfs.store import apply_repo

    reference = _reference_settings(feast_world, tmp_path)
    apply_repo(reference)
    summary = materialize(reference)
    assert summary["rows written"] == "n/a (Feast's local engine)"
    client = _client(feast_world)
    users = _offline_latest(feast_world, "user_profile_features").index.tolist()
    with client.pipeline(transaction=False) as pipe:
        for user in users:
            pipe.hgetall(_key(user))
            pipe.hgetall(_key(user, "churnfs_reference"))
        replies = pipe.execute()
    try:
        ours, feasts = replies[0::2], replies[1::2]
        assert all(len(h) == 4 + 7 + 16 + 9 + 1 for h in ours)  # four _ts fields (one per view), 33 features
        differing = [u for u, a, b in zip(users, ours, feasts, strict=True) if a != b]
        assert differing == []
    finally:
        for key in client.scan_iter(match=b"*churnfs_reference"):
            client.delete(key)


def test_consistency_check_is_green_on_the_materialized_world(feast_world: Settings) -> None:
    report = check_consistency(feast_world, sample=200, seed=0)
    assert report.ok, report.mismatches
    assert report.users == 200 and report.features == 33
    assert report.as_of == load_world_spec(feast_world.raw_dir).end


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("check-consistency")(_clean_errors(check_consistency_command))
    app.command("unused")(lambda: None)  # two commands, so the name is a subcommand
    return app


def _add_to_total_events(client: redis.Redis, user: int, delta: int) -> tuple[bytes, bytes, ValueProto]:
    """Overwrite one user's online ``total_events`` with its value + ``delta`` (same event time);
    returns the field, the original bytes (to restore) and the original value."""
    field = field_key("user_activity_features", "total_events")
    original = client.hget(_key(user), field)
    assert original is not None
    value = ValueProto()
    value.ParseFromString(original)
    client.hset(_key(user), field, ValueProto(int64_val=value.int64_val + delta).SerializeToString())
    return field, original, value


def test_a_corrupted_online_value_is_caught_and_named(feast_world: Settings) -> None:
    client = _client(feast_world)
    clean = check_consistency(feast_world, sample=40, seed=3)
    assert clean.ok
    user = clean.user_ids[7]
    field, original, value = _add_to_total_events(client, user, 1000)
    try:
        report = check_consistency(feast_world, sample=40, seed=3)
        assert report.mismatch_count == 1
        (mismatch,) = report.mismatches
        assert (mismatch.user_id, mismatch.feature) == (user, "user_activity_features:total_events")
        assert mismatch.online == value.int64_val + 1000 and mismatch.offline == value.int64_val

        args = ["check-consistency", "--sample", "40", "--seed", "3", "--data-dir", str(feast_world.data_dir)]
        env = {"REDIS_CONNECTION_STRING": feast_world.redis_connection_string}
        result = CliRunner().invoke(_app(), args, env=env)
        assert result.exit_code == 1
        assert f"user {user} user_activity_features:total_events" in result.output
    finally:
        client.hset(_key(user), field, original)
    assert check_consistency(feast_world, sample=40, seed=3).ok


def test_replace_mends_a_stale_value_a_plain_materialize_keeps(feast_world: Settings) -> None:
    """A value from an earlier build at the same event time survives a plain materialize (Feast
    keeps a stored value whose event time is not older); ``replace`` deletes and rewrites it."""
    client = _client(feast_world)
    users = check_consistency(feast_world, sample=40, seed=5).user_ids
    user = users[3]
    field, original, _ = _add_to_total_events(client, user, 7)
    try:
        materialize(feast_world)
        assert check_consistency(feast_world, sample=40, seed=5).mismatch_count == 1
        summary = materialize(feast_world, replace=True)
        assert summary["replaced"].startswith("yes")
        assert client.hget(_key(user), field) == original
        assert check_consistency(feast_world, sample=40, seed=5).ok
    finally:
        client.hset(_key(user), field, original)


def test_materialize_threads_share_one_redis_client(feast_world: Settings) -> None:
    """Each materialize starts from a fresh FeatureStore, whose Redis client Feast makes lazily;
    the view threads must share one (four racing clients once closed each other's connections)."""
    for _ in range(5):
        summary = materialize(feast_world)
        assert summary["feature views"].count(",") == len(ONLINE_VIEWS) - 1
    assert check_consistency(feast_world, sample=50, seed=1).ok


def test_materialize_again_keeps_a_newer_pushed_value_and_writes_nothing(
    feast_world: Settings, store: FeatureStore
) -> None:
    from feast.data_source import PushMode

    client = _client(feast_world)
    user = int(_offline_latest(feast_world, "user_activity_features").index[22])
    before = client.hgetall(_key(user))
    end = load_world_spec(feast_world.raw_dir).end
    row = _offline_latest(feast_world, "user_activity_features").loc[[user]].reset_index()
    row["event_timestamp"] = pd.Timestamp(end) + pd.Timedelta(days=1)
    row["total_events"] = 987_654
    try:
        store.push("user_activity_push", row, to=PushMode.ONLINE)
        summary = materialize(feast_world)
        assert summary["rows written"] == 0  # every stored row is as new as the offline one
        online = store.get_online_features(
            features=["user_activity_features:total_events"], entity_rows=[{"user_id": user}]
        ).to_dict()
        assert online["total_events"] == [987_654]
    finally:
        client.delete(_key(user))
        client.hset(_key(user), mapping=before)


def test_unreachable_redis_is_one_clear_error(feast_world: Settings) -> None:
    port = free_port()
    settings = feast_world.model_copy(update={"redis_connection_string": f"127.0.0.1:{port}"})
    with pytest.raises(OnlineStoreUnavailableError, match=f"Redis does not answer at 127.0.0.1:{port}"):
        get_store(settings)
    result = CliRunner().invoke(
        _app(), ["check-consistency", "--data-dir", str(feast_world.data_dir)],
        env={"REDIS_CONNECTION_STRING": f"127.0.0.1:{port}"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"Redis does not answer at 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
