"""GET /features/{user_id}: the feature vector of the model's feature service."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter

from churnfs.settings import Settings
from serving.api.deps import StateDep, UserIdPath
from serving.api.responses import error_responses
from serving.errors import UnknownUserError
from serving.features import FeatureVector
from serving.schemas import FeaturesResponse

router = APIRouter(tags=["features"])


def topic_labels(settings: Settings) -> list[str] | None:
    """The current topic model's labels (``transformations.topics``), read again only when a
    version's ``labels.json`` changes."""
    from transformations.topics import LABELS_FILE, topic_model_root

    root = topic_model_root(settings)
    stamps = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in root.glob(f"v*/{LABELS_FILE}")))
    if not stamps:
        return None
    names = _topic_labels(str(settings.data_dir), settings.embedding_model, stamps)
    return list(names) if names is not None else None


@lru_cache(maxsize=4)
def _topic_labels(
    data_dir: str, embedding_model: str, stamps: tuple[tuple[str, int], ...]
) -> tuple[str, ...] | None:
    from pathlib import Path

    from transformations.topics import load_topic_model

    model = load_topic_model(Settings(data_dir=Path(data_dir)), embedding_model)
    names = model.topic_names if model is not None else None
    return tuple(names) if names is not None else None


def feature_payload(
    vector: FeatureVector, feature_service: str, labels: list[str] | None = None
) -> dict[str, Any]:
    """The response body; ``labels`` name the topic_vector's components when it has them."""
    topics = vector.values.get("topic_vector")
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
        "topic_labels": labels
        if isinstance(topics, list) and labels and len(labels) == len(topics)
        else None,
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
    return feature_payload(vector, state.layout.feature_service, topic_labels(state.settings))
