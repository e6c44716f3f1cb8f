"""Request and response bodies of the API, with the examples the OpenAPI docs show."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_USER_ID = 2**63 - 1
"""User ids are int64 in every table; larger ids cannot exist."""

UserIdValue = Annotated[int, Field(ge=0, le=MAX_USER_ID, description="A user id (non-negative integer).")]
FeatureScalar = bool | int | float | str
FeatureValue = FeatureScalar | list[float] | None
Source = Literal["online", "offline"]

_EXAMPLE_FEATURES: dict[str, Any] = {
    "age": 34,
    "gender": "female",
    "country": "DE",
    "income": 52000.0,
    "device": "android",
    "premium": False,
    "account_age_days": 812,
    "total_events": 57,
    "purchase_count": 3,
    "session_count": 14,
    "last_active_days": 2.4,
    "events_30d": 11,
    "activity_trend": -0.31,
    "categorical_event_vector": [0.62, 0.17, 0.09, 0.05, 0.05, 0.02],
    "has_reviews": True,
    "avg_rating": 2.5,
    "sentiment_score": -0.42,
}
_EXAMPLE_TOP = [
    {"feature": "last_active_days", "value": 2.4, "contribution": 0.83, "direction": "raises_risk"},
    {"feature": "sentiment_score", "value": -0.42, "contribution": 0.41, "direction": "raises_risk"},
    {"feature": "premium", "value": False, "contribution": 0.22, "direction": "raises_risk"},
    {"feature": "events_30d", "value": 11, "contribution": -0.18, "direction": "lowers_risk"},
    {"feature": "account_age_days", "value": 812, "contribution": -0.09, "direction": "lowers_risk"},
]
_EXAMPLE_PREDICTION: dict[str, Any] = {
    "request_id": "3f9c2a7e5b7d4a1c9e0f6b2d8a4c1e7f",
    "user_id": 42,
    "churn_probability": 0.63,
    "risk_band": "high",
    "model_name": "churn-model",
    "model_version": "3",
    "model_alias": "champion",
    "feature_service": "churn_model_v1",
    "source": "online",
    "fallback_reason": None,
    "top_features": _EXAMPLE_TOP,
}


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error the service returns has this shape, whatever the status."""

    error: str = Field(description="A short machine-readable code.")
    detail: str = Field(description="What went wrong and what to do about it.")
    request_id: str | None = Field(default=None, description="Quote it when reporting the error.")
    errors: list[FieldError] | None = Field(default=None, description="The invalid fields (422 only).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "unknown_user",
                    "detail": "user 999999999 is in neither the online nor the offline store",
                    "request_id": "3f9c2a7e5b7d4a1c9e0f6b2d8a4c1e7f",
                }
            ]
        }
    )


class ViewSource(BaseModel):
    """Where one feature view's values came from."""

    source: Source | None = Field(description="online, offline, or null when neither store has the view.")
    event_timestamp: datetime | None = Field(description="As-of time of the values.")


class FeaturesResponse(BaseModel):
    """A user's feature vector for the model's feature service."""

    user_id: int
    feature_service: str
    source: Source = Field(description="online when every view came from Redis, else offline (fallback).")
    fallback_reason: str | None = Field(
        description="Why the offline store answered: online_store_unreachable, not_in_online_store."
    )
    views: dict[str, ViewSource]
    features: dict[str, FeatureValue]
    topic_labels: list[str] | None = Field(
        default=None,
        description="The label of each topic_vector component, in order: the topic model version's "
        "top words by class-based TF-IDF; null when the features hold no topic_vector or the model "
        "has no labels yet.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 42,
                    "feature_service": "churn_model_v1",
                    "source": "online",
                    "fallback_reason": None,
                    "views": {
                        "user_profile_features": {
                            "source": "online",
                            "event_timestamp": "2025-07-07T00:00:00Z",
                        },
                        "user_activity_features": {
                            "source": "online",
                            "event_timestamp": "2025-07-07T00:00:00Z",
                        },
                    },
                    "features": _EXAMPLE_FEATURES,
                }
            ]
        }
    )


class TopFeature(BaseModel):
    """A feature behind the score, by its native contribution (log-odds)."""

    feature: str
    value: FeatureScalar | None = Field(description="The feature's value; null for vectors.")
    contribution: float
    direction: Literal["raises_risk", "lowers_risk"]


class Prediction(BaseModel):
    """One user's churn score."""

    request_id: str
    user_id: int
    churn_probability: float = Field(ge=0, le=1, description="Probability of churning in the next 30 days.")
    risk_band: Literal["low", "medium", "high"] = Field(description="low < 0.2 <= medium < 0.5 <= high.")
    model_name: str
    model_version: str
    model_alias: str
    feature_service: str
    source: Source
    fallback_reason: str | None
    top_features: list[TopFeature]

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_PREDICTION]})


class PredictBatchRequest(BaseModel):
    """Ids to score in one call (at most PREDICT_BATCH_LIMIT, 1,000 by default)."""

    user_ids: list[UserIdValue] = Field(min_length=1, description="Ids to score, in the order wanted back.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_ids": [42, 7, 1234]}]})


class PredictBatchResponse(BaseModel):
    """Scores of the known users, in request order, and the ids neither store knows."""

    request_id: str
    model_version: str | None
    predictions: list[Prediction]
    unknown_user_ids: list[int]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": _EXAMPLE_PREDICTION["request_id"],
                    "model_version": "3",
                    "predictions": [_EXAMPLE_PREDICTION],
                    "unknown_user_ids": [999999999],
                }
            ]
        }
    )


class FeatureChange(BaseModel):
    """A feature whose value the refresh changed."""

    feature: str
    before: FeatureValue
    after: FeatureValue


class RefreshedView(BaseModel):
    """What a refresh wrote for one feature view."""

    feature_view: str
    push_source: str
    event_timestamp_before: datetime | None
    event_timestamp_after: datetime
    source_before: Source | None = Field(description="Where the previous values were read from.")
    changed: list[FeatureChange]
    unchanged: int = Field(description="How many features kept their value.")
    offline_path: str = Field(description="The parquet part the recomputed row was appended to.")


class RefreshResponse(BaseModel):
    """The recomputed views of one user, written online (push) and offline (append)."""

    user_id: int
    as_of: datetime
    online_written: bool
    views: list[RefreshedView]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 42,
                    "as_of": "2025-07-07T00:00:00Z",
                    "online_written": True,
                    "views": [
                        {
                            "feature_view": "user_activity_features",
                            "push_source": "user_activity_push",
                            "event_timestamp_before": "2025-07-07T00:00:00Z",
                            "event_timestamp_after": "2025-07-07T00:00:00Z",
                            "source_before": "online",
                            "changed": [
                                {"feature": "last_active_days", "before": 2.4, "after": 0.3},
                                {"feature": "events_7d", "before": 4, "after": 5},
                            ],
                            "unchanged": 14,
                            "offline_path": "data/offline_store/refreshes/user_activity_features/"
                            "20250707T000000000000-20250708T093000123456-user42.parquet",
                        }
                    ],
                }
            ]
        }
    )


class ComponentStatus(BaseModel):
    """One dependency's state."""

    ok: bool
    detail: str


class OnlineStoreStatus(ComponentStatus):
    type: str = Field(description="Feast online store type (redis, sqlite, ...).")
    address: str | None = Field(description="host:port/db, no secrets.")
    latency_ms: float | None


class RegistryStatus(ComponentStatus):
    feature_service: str | None
    feature_views: list[str]


class ModelStatus(ComponentStatus):
    name: str
    alias: str
    version: str | None
    run_id: str | None
    feature_service: str | None
    feature_service_version: str | None


class FallbackStatus(ComponentStatus):
    users: int = Field(description="Users with at least one view in the offline fallback.")


class Freshness(BaseModel):
    """How old a view's newest materialized values are."""

    feature_view: str
    materialized_until: datetime | None = Field(description="End of the latest materialization interval.")
    age_seconds: float | None
    ttl_seconds: float | None


class HealthResponse(BaseModel):
    """ok: everything answers. degraded: Redis is down and the offline fallback answers.
    unavailable (HTTP 503): the registry, the model or every feature source is missing."""

    status: Literal["ok", "degraded", "unavailable"]
    reasons: list[str] = Field(description="What is wrong and what to run.")
    online_store: OnlineStoreStatus
    registry: RegistryStatus
    model: ModelStatus
    offline_fallback: FallbackStatus
    freshness: list[Freshness]
    newest_materialized: datetime | None
    newest_age_seconds: float | None
    last_refresh: datetime | None = Field(description="Time of the latest refresh through this process.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "reasons": [],
                    "online_store": {
                        "ok": True,
                        "detail": "Redis at 127.0.0.1:6379/0 answers",
                        "type": "redis",
                        "address": "127.0.0.1:6379/0",
                        "latency_ms": 0.21,
                    },
                    "registry": {
                        "ok": True,
                        "detail": "feature service churn_model_v1 found",
                        "feature_service": "churn_model_v1",
                        "feature_views": [
                            "user_profile_features",
                            "user_activity_features",
                            "user_review_features",
                        ],
                    },
                    "model": {
                        "ok": True,
                        "detail": "loaded",
                        "name": "churn-model",
                        "alias": "champion",
                        "version": "3",
                        "run_id": "8c1f0b1f6a2e4c3d9b7a5e4f3c2d1b0a",
                        "feature_service": "churn_model_v1",
                        "feature_service_version": "v1",
                    },
                    "offline_fallback": {"ok": True, "detail": "latest snapshots loaded", "users": 100000},
                    "freshness": [
                        {
                            "feature_view": "user_activity_features",
                            "materialized_until": "2025-07-07T00:00:00Z",
                            "age_seconds": 86400.0,
                            "ttl_seconds": 7776000.0,
                        }
                    ],
                    "newest_materialized": "2025-07-07T00:00:00Z",
                    "newest_age_seconds": 86400.0,
                    "last_refresh": None,
                }
            ]
        }
    )
