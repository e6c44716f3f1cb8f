"""POST /refresh/{user_id}: recompute one user's features as of the refresh clock."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.api.deps import ApiKeyDep, StateDep, UserIdPath
from serving.api.responses import error_responses
from serving.refresh import refresh_user
from serving.schemas import RefreshResponse

router = APIRouter(tags=["refresh"])


@router.post(
    "/refresh/{user_id}",
    response_model=RefreshResponse,
    summary="Recompute a user's pushable features and write them online and offline",
    responses=error_responses(401, 404, 409, 422, 503),
)
def refresh(user_id: UserIdPath, state: StateDep, _: ApiKeyDep) -> Any:
    """Recompute the user's profile, activity and review features from the raw tables as of the
    refresh clock (``REFRESH_CLOCK``: the world's end by default, never past the newest raw data),
    with the batch job's transformation functions; append them to the offline store, where Feast's
    historical retrieval reads them, and push them to the online store through Feast's push
    sources. Requires ``X-API-Key``."""
    return refresh_user(state, user_id)
