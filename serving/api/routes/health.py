"""GET /health: the state of every dependency and the freshness of the online features."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from serving.api.deps import StateDep
from serving.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Readiness of Redis, the Feast registry, the model and the offline fallback",
    responses={503: {"model": HealthResponse, "description": "Not ready: the reasons say what to run."}},
)
async def health(state: StateDep, response: Response) -> Any:
    """200 with status ok (all up) or degraded (Redis down, the offline fallback answers);
    503 with status unavailable when the registry or the model is missing."""
    report = await run_in_threadpool(state.health)
    if report["status"] == "unavailable":
        response.status_code = 503
    return report
