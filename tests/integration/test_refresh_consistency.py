"""No skew after a refresh: a user whose raw data changed is refreshed through the API, and the
online store, Feast's historical retrieval and ``GET /features`` then serve the same values;
``check-consistency`` covers the refreshed user and a new materialize keeps the refreshed row.

The world is a private copy of the session's Feast world (raw tables, offline store, artifacts)
with its own Redis, so the raw data can change here without touching what other suites read."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from churnfs.settings import Settings
from churnfs.store.redis_servers import RedisServer
from churnfs.world import load_world_spec
from tests.conftest import start_private_redis

pytestmark = pytest.mark.integration

API_KEY = "refresh-test-key"
ADDED_EVENTS = 3
FEATURE_VIEWS = ("user_profile_features", "user_activity_features", "user_review_features")


@dataclass
class PrivateWorld:
    settings: Settings
    end: datetime
    redis_server: RedisServer


@pytest.fixture(scope="module")
def world(feast_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateWorld]:
    from churnfs.store import apply_repo, materialize

    workdir = tmp_path_factory.mktemp("refresh-skew")
    data_dir = workdir / "world"
    shutil.copytree(
        feast_world.data_dir,
        data_dir,
        ignore=shutil.ignore_patterns("registry.db", "mlflow*", "predictions", "refreshes", "online_store"),
    )
    server = start_private_redis(workdir / "redis")
    port = server.port
    try:
        settings = Settings(
            data_dir=data_dir, redis_connection_string=f"127.0.0.1:{port}", churnfs_api_key=API_KEY
        )
        apply_repo(settings)
        materialize(settings)
        yield PrivateWorld(settings, load_world_spec(settings.raw_dir).end, server)
    finally:
        server.stop()


def _refs(store: Any) -> list[str]:
    return [f"{view}:{f.name}" for view in FEATURE_VIEWS for f in store.get_feature_view(view).features]


def _change_raw_data(settings: Settings, end: datetime) -> int:
    """Pick an active user; add copies of their last events an hour or so before the world's end
    and flip their subscription. Returns the user id."""
    events_path = settings.raw_dir / "event_logs.parquet"
    events = pq.read_table(events_path)
    before_end = events.filter(
        pc.less(events.column("event_timestamp"), pa.scalar(end, events.schema.field("event_timestamp").type))
    )
    counts = before_end.group_by("user_id").aggregate([("event_id", "count")])
    active = counts.filter(pc.greater_equal(counts.column("event_id_count"), ADDED_EVENTS))
    user_id = int(pc.min(active.column("user_id")).as_py())
    mine = before_end.filter(pc.equal(before_end.column("user_id"), user_id))
    last = mine.take(pc.sort_indices(mine, [("event_timestamp", "descending")])[:ADDED_EVENTS])
    first_id = int(pc.max(events.column("event_id")).as_py()) + 1
    added = last.set_column(
        last.schema.get_field_index("event_id"),
        "event_id",
        pa.array(range(first_id, first_id + ADDED_EVENTS), last.schema.field("event_id").type),
    ).set_column(
        last.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array(
            [end - timedelta(hours=h + 1) for h in range(ADDED_EVENTS)],
            last.schema.field("event_timestamp").type,
        ),
    )
    pq.write_table(pa.concat_tables([events, added]), events_path)

    users_path = settings.raw_dir / "user_table.parquet"
    users = pq.read_table(users_path)
    is_user = pc.equal(users.column("user_id"), user_id)
    flipped = pc.if_else(is_user, pc.invert(users.column("premium")), users.column("premium"))
    pq.write_table(users.set_column(users.schema.get_field_index("premium"), "premium", flipped), users_path)
    return user_id


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _assert_same(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    assert set(actual) == set(expected), where
    for name, want in expected.items():
        got, want = _plain(actual[name]), _plain(want)
        if isinstance(want, list):
            np.testing.assert_allclose(
                np.asarray(got, float),
                np.asarray(want, float),
                rtol=1e-6,
                atol=1e-6,
                err_msg=f"{where} {name}",
            )
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-6, abs=1e-9), f"{where} {name}"
        else:
            assert got == want, f"{where} {name}"


def test_a_refreshed_user_reads_the_same_online_offline_and_through_the_api(world: PrivateWorld) -> None:
    from churnfs.store import check_consistency, get_store, materialize
    from serving.app import create_app
    from transformations.refresh import recompute_user

    settings, end = world.settings, world.end
    store = get_store(settings)
    refs = _refs(store)
    names = [ref.split(":")[1] for ref in refs]
    user_id = _change_raw_data(settings, end)

    with TestClient(create_app(settings, configure_logs=False)) as client:
        served_before = client.get(f"/features/{user_id}").json()["features"]
        response = client.post(f"/refresh/{user_id}", headers={"X-API-Key": API_KEY})
        assert response.status_code == 200, response.text
        body = response.json()
        served_after = client.get(f"/features/{user_id}").json()

    # The refresh is as of the world's end (the world clock), not of the wall clock.
    assert datetime.fromisoformat(body["as_of"]) == end
    views = {v["feature_view"]: v for v in body["views"]}
    assert set(views) == {*FEATURE_VIEWS, "user_review_embeddings"}
    activity = {c["feature"]: c for c in views["user_activity_features"]["changed"]}
    assert activity["total_events"]["after"] == activity["total_events"]["before"] + ADDED_EVENTS
    assert activity["last_active_days"]["after"] == pytest.approx(1 / 24)
    premium = {c["feature"]: c for c in views["user_profile_features"]["changed"]}["premium"]
    assert premium == {
        "feature": "premium",
        "before": served_before["premium"],
        "after": not served_before["premium"],
    }

    fresh = recompute_user(settings, user_id, end, ["profile", "activity", "review"])
    expected = {n: fresh[v].iloc[0][n] for v in FEATURE_VIEWS for n in fresh[v].columns if n in names}
    assert served_after["source"] == "online"
    _assert_same(served_after["features"], expected, "GET /features")

    online = store.get_online_features(features=refs, entity_rows=[{"user_id": user_id}]).to_dict()
    _assert_same({n: online[n][0] for n in names}, expected, "online store")

    # Feast's point-in-time join at the world's end and a week later reads the refreshed row
    # (same event time as the batch row, later created_timestamp).
    entity_df = pd.DataFrame(
        {
            "user_id": [user_id, user_id],
            "event_timestamp": [pd.Timestamp(end), pd.Timestamp(end + timedelta(days=7))],
        }
    )
    offline = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    for _, row in offline.iterrows():
        _assert_same({n: row[n] for n in names}, expected, f"historical features at {row['event_timestamp']}")

    report = check_consistency(settings, sample=30, seed=2)
    assert report.refreshed_user_ids == [user_id] and user_id in report.user_ids
    assert report.ok, report.mismatches

    # A new materialize (plain, then after deleting the online values) keeps the refreshed row:
    # the bulk engine reads the view's parts through the offline store.
    for replace in (False, True):
        materialize(settings, replace=replace)
        online = store.get_online_features(features=refs, entity_rows=[{"user_id": user_id}]).to_dict()
        _assert_same(
            {n: online[n][0] for n in names}, expected, f"online after materialize replace={replace}"
        )
        assert check_consistency(settings, sample=30, seed=2).ok
