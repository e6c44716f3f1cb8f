"""POST /predict/{user_id} and POST /predict: churn scores from the champion model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from churnfs.errors import InvalidInputError
from serving.api.deps import RequestIdDep, StateDep, UserIdPath
from serving.api.responses import error_responses
from serving.errors import UnknownUserError
from serving.schemas import PredictBatchRequest, PredictBatchResponse, Prediction

router = APIRouter(prefix="/predict", tags=["predict"])


@router.post(
    "/{user_id}",
    response_model=Prediction,
    summary="Score one user",
    responses=error_responses(404, 422, 503),
)
async def predict_one(user_id: UserIdPath, state: StateDep, request_id: RequestIdDep) -> Any:
    """Features (online, else offline), then the ``champion`` model: the churn probability,
    its risk band, the model version and the features behind the score. Logged for monitoring."""
    # Concurrent requests are scored together (serving.batching); the event loop never blocks.
    prediction = await state.predict_one(user_id, request_id)
    if prediction is None:
        raise UnknownUserError(f"user {user_id} is in neither the online nor the offline store")
    return prediction


@router.post(
    "",
    response_model=PredictBatchResponse,
    summary="Score a batch of users in one call",
    responses=error_responses(422, 503),
)
def predict_batch(body: PredictBatchRequest, state: StateDep, request_id: RequestIdDep) -> Any:
    """Score up to PREDICT_BATCH_LIMIT users (1,000 by default) with one feature read and one
    model call. Unknown ids are listed in ``unknown_user_ids`` instead of failing the batch."""
    limit = state.settings.predict_batch_limit
    if len(body.user_ids) > limit:
        raise InvalidInputError(
            f"a batch holds at most {limit} user ids (PREDICT_BATCH_LIMIT), got {len(body.user_ids)}: "
            "split it into smaller calls"
        )
    predictions, unknown = state.predict(body.user_ids, request_id)
    return {
        "request_id": request_id,
        "model_version": state.model.version if state.model is not None else None,
        "predictions": predictions,
        "unknown_user_ids": unknown,
    }
