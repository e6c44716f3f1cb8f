"""GET /features/{user_id}: the feature vector of the model's feature service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.api.deps import StateDep, UserIdPath
from serving.api.responses import error_responses
from serving.errors import UnknownUserError
from serving.features import FeatureVector
from serving.schemas import FeaturesResponse

router = APIRouter(tags=["features"])


def feature_payload(vector: FeatureVector, feature_service: str) -> dict[str, Any]:
    return {
        "user_id": vector.user_id,
        "feature_service": feature_service,
        "source": vector.source,
        "fallback_reason": vector.fallback_reason,
        "views": {
            view: {"source": origin.source, "event_timestamp": origin.event_timestamp}
            for view, origin in vector.views.items()
        },
        "features": vector.values,
    }


@router.get(
    "/features/{user_id}",
    response_model=FeaturesResponse,
    summary="A user's feature vector (online, with offline fallback)",
    responses=error_responses(404, 422, 503),
)
def get_features(user_id: UserIdPath, state: StateDep) -> Any:
    """Read the user's features from Redis through Feast; when Redis has nothing for the user or
    cannot be reached, answer from the offline store's latest snapshot (``source: offline``)."""
    vector = state.features([user_id])[0]
    if vector is None:
        raise UnknownUserError(f"user {user_id} is in neither the online nor the offline store")
    assert state.layout is not None
    return feature_payload(vector, state.layout.feature_service)
