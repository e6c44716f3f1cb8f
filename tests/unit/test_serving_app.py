"""The API's edges with no world behind it: bad input, missing dependencies, auth, errors as
JSON, request ids and the OpenAPI document. No service is needed (nothing exists to connect to)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churnfs.settings import Settings
from serving.app import create_app

KEY = "test-key-123"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("empty-world"),
        mlflow_tracking_uri=None,  # this empty world's own store, whatever the environment says
        churnfs_api_key=KEY,
        predict_batch_limit=3,
    )
    app = create_app(settings, configure_logs=False)

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", str(2**63), "1e3"])
@pytest.mark.parametrize(
    ("method", "route"), [("get", "/features/"), ("post", "/predict/"), ("post", "/refresh/")]
)
def test_a_bad_user_id_gets_422_with_a_clear_json_error(
    client: TestClient, method: str, route: str, bad: str
) -> None:
    response = getattr(client, method)(route + bad, headers={"X-API-Key": KEY})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["detail"] == f"user_id must be a non-negative integer (at most 2^63-1), got {bad!r}"
    assert body["errors"][0]["loc"] == ["path", "user_id"]
    assert body["request_id"] == response.headers["x-request-id"]


def test_an_oversized_batch_is_refused_with_the_limit_in_the_message(client: TestClient) -> None:
    response = client.post("/predict", json={"user_ids": [1, 2, 3, 4]})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "a batch holds at most 3 user ids (PREDICT_BATCH_LIMIT), got 4: split it into smaller calls"
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"user_ids": []}, "user_ids: List should have at least 1 item after validation, not 0"),
        ({"user_ids": [1, -2]}, "user_ids.1: Input should be greater than or equal to 0"),
        ({"user_ids": [1], "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_batch_gets_422(client: TestClient, body: dict, detail: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == detail


def test_predict_without_a_registered_model_is_503_saying_what_to_run(client: TestClient) -> None:
    for response in (client.post("/predict/1"), client.post("/predict", json={"user_ids": [1]})):
        assert response.status_code == 503
        assert response.json()["error"] == "service_unavailable"
        assert "run `make train` first" in response.json()["detail"]


def test_health_is_503_and_lists_what_is_missing(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["model"]["ok"] is False and "make train" in body["model"]["detail"]
    assert body["registry"]["ok"] is False
    assert body["offline_fallback"]["ok"] is False
    assert any(reason.startswith("model:") for reason in body["reasons"])


def test_features_without_a_registry_is_503(client: TestClient) -> None:
    response = client.get("/features/1")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


def test_refresh_without_or_with_a_wrong_api_key_is_401(client: TestClient) -> None:
    missing = client.post("/refresh/1")
    assert missing.status_code == 401
    assert missing.json()["detail"] == "missing X-API-Key header: send the key set in CHURNFS_API_KEY"
    wrong = client.post("/refresh/1", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "wrong X-API-Key: send the key set in CHURNFS_API_KEY"
    right = client.post("/refresh/1", headers={"X-API-Key": KEY})
    assert right.status_code == 503  # authorised, but there is no feature store to refresh


def test_refresh_is_disabled_when_the_server_has_no_key(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), configure_logs=False)
    with TestClient(app) as c:
        response = c.post("/refresh/1", headers={"X-API-Key": "anything"})
    assert response.status_code == 503
    assert "set CHURNFS_API_KEY" in response.json()["detail"]


def test_an_unhandled_error_is_a_json_500_without_the_trace(client: TestClient) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert "secret internal detail" not in response.text and "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]


def test_a_callers_request_id_is_echoed_and_a_bad_one_replaced(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    replaced = client.get("/health", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert replaced != "bad id with spaces" and len(replaced) == 32


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong_method = client.get("/predict/1")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


def test_every_route_documents_an_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = {(m, p): op for p, item in spec["paths"].items() for m, op in item.items()}
    assert set(operations) == {
        ("get", "/health"),
        ("get", "/features/{user_id}"),
        ("post", "/predict/{user_id}"),
        ("post", "/predict"),
        ("post", "/refresh/{user_id}"),
        ("get", "/metrics"),
    }
    schemas = spec["components"]["schemas"]
    for (method, path), op in operations.items():
        ok = op["responses"]["200"]["content"]
        media = next(iter(ok.values()))
        ref = media.get("schema", {}).get("$ref", "")
        has_example = "example" in media or "examples" in schemas.get(ref.rsplit("/", 1)[-1], {})
        assert has_example, f"{method} {path} has no example"
    assert operations[("post", "/refresh/{user_id}")]["security"] == [{"APIKeyHeader": []}]


def test_metrics_expose_the_service_counters(client: TestClient) -> None:
    client.get("/health")
    text = client.get("/metrics").text
    for name in (
        "churnfs_feature_fallbacks_total",
        "churnfs_predictions_total",
        "churnfs_online_store_up",
        "churnfs_model_info",
        "http_requests_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    assert 'handler="/health"' in text
