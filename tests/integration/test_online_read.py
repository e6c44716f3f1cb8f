"""The churnfs online store's read path returns exactly what Feast's own RedisOnlineStore returns.

Both stores read the same materialized small world (same project, registry and Redis database);
the reference is a FeatureStore whose feature_store.yaml names Feast's ``redis`` store."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from feast import FeatureStore
from feast.online_response import OnlineResponse

from churnfs.settings import PROJECT_ROOT, Settings
from churnfs.store import get_store
from churnfs.store.online import ChurnRedisOnlineStore, ColumnarOnlineResponse
from churnfs.world import load_world_spec

pytestmark = pytest.mark.integration

SERVICE = "churn_model_v1"
UNKNOWN_USERS = [0, 10**12]


@pytest.fixture(scope="module")
def store(feast_world: Settings) -> FeatureStore:
    store = get_store(feast_world)
    assert isinstance(store._get_provider().online_store, ChurnRedisOnlineStore)
    return store


@pytest.fixture(scope="module")
def feast_store(feast_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """The same world through Feast's own ``RedisOnlineStore``."""
    repo = tmp_path_factory.mktemp("feast_redis")
    config = yaml.safe_load((PROJECT_ROOT / "feature_store.yaml").read_text())
    config["online_store"] = {"type": "redis", "connection_string": "${REDIS_CONNECTION_STRING}"}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = get_store(feast_world.model_copy(update={"feast_repo_path": repo}))
    assert type(store._get_provider().online_store).__name__ == "RedisOnlineStore"
    return store


@pytest.fixture(scope="module")
def users(feast_world: Settings) -> list[int]:
    return list(range(1, load_world_spec(feast_world.raw_dir).users + 1))


def _assert_same(ours: OnlineResponse, feasts: OnlineResponse) -> None:
    """Same columns in the same order, every value equal (vectors element by element, exactly),
    the same event seconds, and the same response protobuf."""
    assert isinstance(ours, ColumnarOnlineResponse)
    for with_times in (False, True):
        got, want = ours.to_dict(with_times), feasts.to_dict(with_times)
        assert list(got) == list(want)
        for name in want:
            assert len(got[name]) == len(want[name]), name
            for i, (g, w) in enumerate(zip(got[name], want[name], strict=True)):
                assert type(g) is type(w) and g == w, (name, i, g, w)
    assert ours.proto == feasts.proto


def test_churn_model_v1_for_every_user_equals_feasts_own_read(
    store: FeatureStore, feast_store: FeatureStore, users: list[int]
) -> None:
    service = store.get_feature_service(SERVICE)
    for start in range(0, len(users), 500):
        rows = [{"user_id": u} for u in users[start : start + 500]]
        _assert_same(
            store.get_online_features(features=service, entity_rows=rows),
            feast_store.get_online_features(features=service, entity_rows=rows),
        )


def test_repeated_and_unknown_users_read_like_feast(store: FeatureStore, feast_store: FeatureStore) -> None:
    service = store.get_feature_service(SERVICE)
    rows = [{"user_id": u} for u in [7, *UNKNOWN_USERS, 7, 3, 7]]
    ours = store.get_online_features(features=service, entity_rows=rows)
    _assert_same(ours, feast_store.get_online_features(features=service, entity_rows=rows))
    columns = ours.to_dict(include_event_timestamps=True)
    assert columns["user_id"] == [7, *UNKNOWN_USERS, 7, 3, 7]
    assert columns["age"][1] is None and columns["age__ts"][1] == 0  # unknown: Feast's None, second 0
    assert columns["age"][0] is not None and columns["age"][0] == columns["age"][3]


def test_feature_references_with_full_names_and_the_embedding_read_like_feast(
    store: FeatureStore, feast_store: FeatureStore, users: list[int]
) -> None:
    refs = [
        "user_review_embeddings:review_embedding",
        "user_profile_features:country",
        "user_activity_features:categorical_event_vector",
        "user_review_features:has_reviews",
    ]
    rows = [{"user_id": u} for u in users[:300]]
    for full in (False, True):
        ours = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=full)
        _assert_same(
            ours, feast_store.get_online_features(features=refs, entity_rows=rows, full_feature_names=full)
        )
    embedding = ours.to_dict()["user_review_embeddings__review_embedding"]
    assert all(len(v) == 384 for v in embedding)


def test_columnar_entity_rows_read_like_feast(store: FeatureStore, feast_store: FeatureStore) -> None:
    service = store.get_feature_service(SERVICE)
    rows = {"user_id": [5, 9, 11]}
    _assert_same(
        store.get_online_features(features=service, entity_rows=rows),
        feast_store.get_online_features(features=service, entity_rows=rows),
    )


def test_to_dict_hands_out_fresh_objects_each_call(store: FeatureStore) -> None:
    response = store.get_online_features(
        features=["user_review_features:topic_vector"], entity_rows=[{"user_id": 1}]
    )
    first: dict[str, Any] = response.to_dict()
    expected = list(first["topic_vector"][0])
    first["topic_vector"][0].append(99.0)
    first["user_id"].append(2)
    again = response.to_dict()
    assert again["topic_vector"][0] == expected and again["user_id"] == [1]


def test_a_bad_entity_key_is_feasts_own_error(store: FeatureStore, feast_store: FeatureStore) -> None:
    service = store.get_feature_service(SERVICE)
    with pytest.raises(Exception) as ours:
        store.get_online_features(features=service, entity_rows=[{"customer": 1}])
    with pytest.raises(Exception) as feasts:
        feast_store.get_online_features(features=service, entity_rows=[{"customer": 1}])
    assert type(ours.value) is type(feasts.value) and str(ours.value) == str(feasts.value)


def test_an_unreachable_redis_raises_redis_connection_error(feast_world: Settings) -> None:
    import redis

    from tests.conftest import free_port

    down = get_store(
        feast_world.model_copy(update={"redis_connection_string": f"127.0.0.1:{free_port()}"}),
        check_online=False,
    )
    with pytest.raises(redis.exceptions.ConnectionError):
        down.get_online_features(
            features=down.get_feature_service(SERVICE), entity_rows=[{"user_id": 1}]
        ).to_dict()
