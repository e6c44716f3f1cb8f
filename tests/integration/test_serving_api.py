"""The serving API over a trained world, a real Redis, the real Feast registry and the real MLflow
registry: every route, the offline fallback, the prediction log, refresh, metrics, a real socket
and a schemathesis fuzz of the OpenAPI schema.

The world is a copy of the session's trained world served from a private redis-server, so
refreshes and prediction logs here never touch what other suites read."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from churnfs.settings import Settings
from churnfs.tracking import mlflow_session
from serving.app import create_app
from serving.model import RISK_BANDS
from tests.conftest import free_port
from tests.integration.test_serving_support import API_KEY, ServedWorld, serve_world
from tests.unit.test_serving_prediction_log import KEYS as PREDICTION_LOG_KEYS

pytestmark = pytest.mark.integration

UNKNOWN = 10**9
BATCH_LIMIT = 50
FUZZ_EXAMPLES = 25


@pytest.fixture(scope="module")
def served(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWorld]:
    with serve_world(
        trained_world, tmp_path_factory.mktemp("serving-api"), predict_batch_limit=BATCH_LIMIT
    ) as world:
        yield world


@pytest.fixture(scope="module")
def client(served: ServedWorld) -> Iterator[TestClient]:
    app = create_app(served.settings, configure_logs=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def champion(served: ServedWorld) -> Any:
    """The champion model, loaded here independently of the service, and its version."""
    import mlflow

    with mlflow_session(served.settings) as client:
        version = client.get_model_version_by_alias("churn-model", "champion")
        return version.version, mlflow.pyfunc.load_model(f"models:/churn-model/{version.version}")


def _latest_offline(settings: Settings, user_id: int) -> dict[str, Any]:
    """The user's newest row of every group file, read straight from parquet."""
    import pyarrow.parquet as pq

    out: dict[str, Any] = {}
    for view in ("user_profile_features", "user_activity_features", "user_review_features"):
        rows = pq.read_table(
            settings.offline_store_dir / f"{view}.parquet", filters=[("user_id", "==", user_id)]
        ).to_pylist()
        row = max(rows, key=lambda r: (r["event_timestamp"], r["created_timestamp"]))
        keys = set(row) - {"user_id", "event_timestamp", "created_timestamp"}
        out.update({k: row[k] for k in keys})
    return out


def _assert_close(actual: Any, expected: Any, name: str) -> None:
    if isinstance(expected, np.ndarray | list):
        assert actual is not None and len(actual) == len(expected), name
        assert np.allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), atol=1e-6), (
            name
        )
    elif isinstance(expected, float | np.floating) and not isinstance(expected, bool):
        assert math.isclose(actual, float(expected), rel_tol=1e-6, abs_tol=1e-6), name
    else:
        assert actual == expected, name


def test_health_reports_redis_registry_model_and_freshness(
    client: TestClient, served: ServedWorld, champion: Any
) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["reasons"] == []
    assert (
        body["online_store"]["ok"] is True
        and body["online_store"]["address"] == f"127.0.0.1:{served.redis_port}/0"
    )
    assert body["registry"]["feature_service"] == "churn_model_v1"
    assert set(body["registry"]["feature_views"]) == {
        "user_profile_features",
        "user_activity_features",
        "user_review_features",
    }
    assert body["model"]["version"] == str(champion[0]) and body["model"]["alias"] == "champion"
    assert body["model"]["feature_service"] == "churn_model_v1"
    assert body["offline_fallback"]["users"] == served.users
    end = served.world_end
    assert {f["feature_view"]: f["materialized_until"] for f in body["freshness"]} == {
        v: end.isoformat().replace("+00:00", "Z") for v in body["registry"]["feature_views"]
    }
    age = (datetime.now(UTC) - end).total_seconds()
    assert abs(body["newest_age_seconds"] - age) < 120


def test_features_come_online_and_equal_the_offline_snapshot_at_materialization_end(
    client: TestClient, served: ServedWorld
) -> None:
    for user_id in served.sample_users[:3]:
        response = client.get(f"/features/{user_id}")
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == "online" and body["fallback_reason"] is None
        assert all(v["source"] == "online" for v in body["views"].values())
        expected = _latest_offline(served.settings, user_id)
        assert "review_embedding" not in body["features"]  # not in churn_model_v1
        for name, value in body["features"].items():
            _assert_close(value, expected[name], f"user {user_id} {name}")


def test_features_name_each_topic_component_with_the_topic_models_labels(
    client: TestClient, served: ServedWorld
) -> None:
    from transformations.topics import load_topic_model

    body = client.get(f"/features/{served.sample_users[0]}").json()
    model = load_topic_model(served.settings, served.settings.embedding_model)
    assert model is not None and model.topic_names is not None  # the feature job labelled it
    assert body["topic_labels"] == model.topic_names
    assert len(body["topic_labels"]) == len(body["features"]["topic_vector"])


def test_an_unknown_user_is_404_everywhere(client: TestClient) -> None:
    for response in (client.get(f"/features/{UNKNOWN}"), client.post(f"/predict/{UNKNOWN}")):
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_user"
        assert str(UNKNOWN) in response.json()["detail"]


def test_a_user_missing_online_is_served_from_the_offline_store(
    client: TestClient, served: ServedWorld
) -> None:
    user_id = served.sample_users[5]
    served.delete_online(user_id)
    before = _fallbacks(client, "not_in_online_store")
    response = client.get(f"/features/{user_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "offline" and body["fallback_reason"] == "not_in_online_store"
    assert {v["source"] for v in body["views"].values()} == {"offline"}
    expected = _latest_offline(served.settings, user_id)
    for name, value in body["features"].items():
        _assert_close(value, expected[name], name)
    prediction = client.post(f"/predict/{user_id}").json()
    assert prediction["source"] == "offline"
    assert _fallbacks(client, "not_in_online_store") == before + 2


def _fallbacks(client: TestClient, reason: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'churnfs_feature_fallbacks_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _direct_scores(champion: Any, features: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(features)
    return champion[1].predict(frame, params={"explain": True})


def test_predict_scores_with_the_champion_and_names_the_features_behind_the_score(
    client: TestClient, served: ServedWorld, champion: Any
) -> None:
    user_id = served.sample_users[0]
    features = client.get(f"/features/{user_id}").json()["features"]
    response = client.post(f"/predict/{user_id}")
    assert response.status_code == 200
    body = response.json()
    direct = _direct_scores(champion, [{"user_id": user_id, **features}])
    probability = float(direct["churn_probability"].iloc[0])
    assert math.isclose(body["churn_probability"], probability, rel_tol=1e-9, abs_tol=1e-12)
    band = next(name for name, upper in RISK_BANDS if probability < upper)
    assert body["risk_band"] == band
    assert body["model_name"] == "churn-model" and body["model_version"] == str(champion[0])
    assert body["model_alias"] == "champion" and body["feature_service"] == "churn_model_v1"
    assert body["source"] == "online" and body["request_id"] == response.headers["x-request-id"]
    contribs = {
        c.removeprefix("contrib__"): float(direct[c].iloc[0])
        for c in direct.columns
        if c.startswith("contrib__")
    }
    expected_top = sorted(contribs.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:5]
    assert [(t["feature"], t["contribution"]) for t in body["top_features"]] == [
        (name, pytest.approx(value, abs=1e-9)) for name, value in expected_top
    ]
    for top in body["top_features"]:
        assert top["direction"] == ("raises_risk" if top["contribution"] > 0 else "lowers_risk")


def test_the_fast_path_gives_the_registered_pyfunc_numbers_to_1e_9(
    client: TestClient, served: ServedWorld, champion: Any
) -> None:
    """The champion loaded from the registry scores the same through ``predict_rows`` (what the
    service uses) as through MLflow's ``predict`` with its schema enforcement."""
    assert client.app.state.serving.model.scoring_path == "rows"  # type: ignore[attr-defined]
    rows = [client.get(f"/features/{u}").json()["features"] for u in served.sample_users]
    expected = _direct_scores(champion, rows)
    probabilities, contributions, names = champion[1]._model_impl.predict_rows(rows, explain=True)
    np.testing.assert_allclose(probabilities, expected["churn_probability"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        contributions, expected[[f"contrib__{n}" for n in names]].to_numpy(), rtol=0, atol=1e-9
    )


def test_concurrent_predictions_are_batched_and_each_equals_the_pyfunc_score(
    client: TestClient, served: ServedWorld, champion: Any
) -> None:
    users = [*served.sample_users[:12], UNKNOWN] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda u: client.post(f"/predict/{u}"), users))
    assert [r.status_code for r in responses] == [404 if u == UNKNOWN else 200 for u in users]
    assert len({r.headers["x-request-id"] for r in responses}) == len(users)
    known = [(u, r.json()) for u, r in zip(users, responses, strict=True) if u != UNKNOWN]
    rows = [client.get(f"/features/{u}").json()["features"] for u, _ in known]
    direct = _direct_scores(champion, rows)
    for (user_id, body), (_, row) in zip(known, direct.iterrows(), strict=True):
        assert body["user_id"] == user_id
        assert math.isclose(body["churn_probability"], row["churn_probability"], rel_tol=0, abs_tol=1e-9)
        for top in body["top_features"]:
            assert top["contribution"] == pytest.approx(row[f"contrib__{top['feature']}"], abs=1e-9)
    metrics = client.get("/metrics").text
    scored = next(line for line in metrics.splitlines() if line.startswith("churnfs_predict_batch_size_sum"))
    assert float(scored.rsplit(" ", 1)[1]) >= len(users)


def test_with_micro_batching_off_each_concurrent_prediction_is_scored_alone(served: ServedWorld) -> None:
    """PREDICT_MICRO_BATCH=false: concurrent one-user requests never share a model call (what the
    serve benchmark compares with one-entity ``feast serve`` requests)."""
    settings = served.settings.model_copy(update={"predict_micro_batch": False})
    users = served.sample_users[:12] * 2

    def batch_metrics(client: TestClient) -> dict[str, float]:
        # The metrics registry is the process's: count this test's batches as a difference.
        text = client.get("/metrics").text
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name in ("churnfs_predict_batch_size_count", "churnfs_predict_batch_size_sum")
        }

    with TestClient(create_app(settings, configure_logs=False)) as client:
        before = batch_metrics(client)
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda u: client.post(f"/predict/{u}"), users))
        after = batch_metrics(client)
    assert [r.status_code for r in responses] == [200] * len(users)
    assert [r.json()["user_id"] for r in responses] == users
    assert {name: after[name] - before.get(name, 0.0) for name in after} == {
        "churnfs_predict_batch_size_count": len(users),
        "churnfs_predict_batch_size_sum": len(users),
    }


def test_every_prediction_is_appended_to_the_prediction_log(client: TestClient, served: ServedWorld) -> None:
    user_id = served.sample_users[1]
    features = client.get(f"/features/{user_id}").json()["features"]
    body = client.post(f"/predict/{user_id}").json()
    path = served.settings.prediction_log_dir / f"predictions-{datetime.now(UTC):%Y-%m-%d}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [r for r in records if r["request_id"] == body["request_id"]]
    assert len(mine) == 1
    record = mine[0]
    assert list(record) == PREDICTION_LOG_KEYS
    assert record["user_id"] == user_id and record["churn_probability"] == body["churn_probability"]
    assert record["model_version"] == body["model_version"] and record["risk_band"] == body["risk_band"]
    assert record["feature_service"] == "churn_model_v1" and record["source"] == "online"
    assert record["features"] == features
    assert abs((datetime.now(UTC) - datetime.fromisoformat(record["logged_at"])).total_seconds()) < 60


def test_batch_predict_keeps_order_lists_unknown_ids_and_logs_one_request_id(
    client: TestClient, served: ServedWorld
) -> None:
    a, b = served.sample_users[2], served.sample_users[3]
    response = client.post("/predict", json={"user_ids": [a, UNKNOWN, b, a]})
    assert response.status_code == 200
    body = response.json()
    assert [p["user_id"] for p in body["predictions"]] == [a, b, a]
    assert body["unknown_user_ids"] == [UNKNOWN]
    single = client.post(f"/predict/{b}").json()
    assert math.isclose(
        body["predictions"][1]["churn_probability"], single["churn_probability"], rel_tol=1e-9
    )
    assert {p["request_id"] for p in body["predictions"]} == {body["request_id"]}
    path = served.settings.prediction_log_dir / f"predictions-{datetime.now(UTC):%Y-%m-%d}.jsonl"
    logged = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["user_id"] for r in logged if r["request_id"] == body["request_id"]] == [a, b, a]


def test_an_oversized_batch_is_refused(client: TestClient, served: ServedWorld) -> None:
    response = client.post("/predict", json={"user_ids": [served.sample_users[0]] * (BATCH_LIMIT + 1)})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"a batch holds at most {BATCH_LIMIT} user ids")


def test_refresh_needs_the_api_key(client: TestClient, served: ServedWorld) -> None:
    user_id = served.sample_users[4]
    assert client.post(f"/refresh/{user_id}").status_code == 401
    assert client.post(f"/refresh/{user_id}", headers={"X-API-Key": API_KEY + "x"}).status_code == 401
    assert client.post(f"/refresh/{UNKNOWN}", headers={"X-API-Key": API_KEY}).status_code == 404


def test_refresh_recomputes_pushes_online_and_appends_offline(
    client: TestClient, served: ServedWorld
) -> None:
    import pyarrow.parquet as pq

    from transformations.refresh import recompute_user

    user_id = served.sample_users[4]
    before = client.get(f"/features/{user_id}").json()
    response = client.post(f"/refresh/{user_id}", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    body = response.json()
    as_of = datetime.fromisoformat(body["as_of"])
    # The world clock: as of the world's end, not of the wall clock (which would make the user
    # look inactive for as long as the world has been over).
    assert as_of == served.world_end and body["online_written"] is True
    views = {v["feature_view"]: v for v in body["views"]}
    # user_review_embeddings is outside churn_model_v1 but recomputed with the review group:
    # the refresh keeps it in step.
    assert set(views) == {
        "user_profile_features",
        "user_activity_features",
        "user_review_features",
        "user_review_embeddings",
    }
    embedding_view = views["user_review_embeddings"]
    assert embedding_view["push_source"] == "user_review_embeddings_push"
    assert embedding_view["source_before"] == "online"
    activity = views["user_activity_features"]
    assert activity["push_source"] == "user_activity_push" and activity["source_before"] == "online"
    assert datetime.fromisoformat(activity["event_timestamp_after"]) == as_of
    assert datetime.fromisoformat(activity["event_timestamp_before"]) == as_of
    # The raw data did not change since the batch job: the refresh recomputes its row exactly.
    for view in ("user_profile_features", "user_activity_features", "user_review_features"):
        assert views[view]["changed"] == [], view
    assert activity["unchanged"] == 16

    expected = recompute_user(served.settings, user_id, as_of, ["profile", "activity", "review"])
    after = client.get(f"/features/{user_id}").json()
    assert after["source"] == "online"
    assert datetime.fromisoformat(after["views"]["user_activity_features"]["event_timestamp"]) == as_of
    for name, value in before["features"].items():
        _assert_close(after["features"][name], value, f"served {name}")
    for view in ("user_profile_features", "user_activity_features", "user_review_features"):
        row = expected[view].iloc[0]
        part = pq.read_table(Path(views[view]["offline_path"])).to_pylist()
        assert len(part) == 1 and part[0]["user_id"] == user_id
        for name in after["features"]:
            if name in row.index:
                _assert_close(after["features"][name], row[name], f"online {name}")
                _assert_close(part[0][name], row[name], f"offline {name}")
    embedding = np.asarray(expected["user_review_embeddings"].iloc[0]["review_embedding"], np.float32)
    part = pq.read_table(Path(embedding_view["offline_path"])).to_pylist()
    np.testing.assert_array_equal(np.asarray(part[0]["review_embedding"], np.float32), embedding)
    from churnfs.store import get_store

    online = (
        get_store(served.settings)
        .get_online_features(
            features=["user_review_embeddings:review_embedding"], entity_rows=[{"user_id": user_id}]
        )
        .to_dict()
    )
    np.testing.assert_array_equal(np.asarray(online["review_embedding"][0], np.float32), embedding)
    assert client.get("/health").json()["last_refresh"] is not None


def test_metrics_count_requests_predictions_and_show_the_model_version(
    client: TestClient, served: ServedWorld, champion: Any
) -> None:
    client.post(f"/predict/{served.sample_users[0]}")
    text = client.get("/metrics").text
    labels = f'alias="champion",feature_service="churn_model_v1",name="churn-model",version="{champion[0]}"'
    assert f"churnfs_model_info{{{labels}}} 1.0" in text
    online = [
        line
        for line in text.splitlines()
        if line.startswith("churnfs_predictions_total{") and 'source="online"' in line
    ]
    assert online and sum(float(line.rsplit(" ", 1)[1]) for line in online) >= 1
    assert 'http_requests_total{handler="/predict/{user_id}",method="POST",status="2xx"}' in text
    assert "churnfs_online_store_up 1.0" in text


def test_the_service_answers_over_a_real_socket_with_json_logs(
    served: ServedWorld, capfd: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    port = free_port()
    app = create_app(served.settings)  # configures JSON logs at start-up, as `churnfs serve` does
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/health").json()["status"] == "ok"
            response = http.post(
                f"/predict/{served.sample_users[0]}", headers={"X-Request-ID": "socket-test-1"}
            )
            assert response.status_code == 200 and response.headers["x-request-id"] == "socket-test-1"
            assert http.get("/features/abc").status_code == 422
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    access = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    mine = [a for a in access if a.get("request_id") == "socket-test-1"]
    assert mine and mine[0]["logger"] == "serving.access" and mine[0]["status"] == 200
    assert mine[0]["path"] == f"/predict/{served.sample_users[0]}" and mine[0]["duration_ms"] > 0


OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/features/{user_id}"),
    ("POST", "/predict/{user_id}"),
    ("POST", "/predict"),
    ("POST", "/refresh/{user_id}"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_fuzzing_the_openapi_schema_finds_no_server_error(client: TestClient, method: str, path: str) -> None:
    """Schemathesis generates valid and invalid requests from the OpenAPI document; none may get
    a 5xx, and every answer must match the documented status codes, media types and schemas."""
    import schemathesis
    from hypothesis import given
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    operation = schemathesis.openapi.from_asgi("/openapi.json", client.app)[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    @given(case=cases)
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=checks)

    fuzz()
