"""OpenAPI descriptions of the error responses, with an example each."""

from __future__ import annotations

from typing import Any

from serving.schemas import ErrorResponse

_EXAMPLES: dict[int, tuple[str, str, str]] = {
    401: (
        "Missing or wrong X-API-Key.",
        "unauthorized",
        "missing X-API-Key header: send the key set in CHURNFS_API_KEY",
    ),
    404: (
        "The user is in neither store.",
        "unknown_user",
        "user 999999999 is in neither the online nor the offline store",
    ),
    409: (
        "The refresh clock is behind the user's latest snapshot; nothing was written.",
        "stale_refresh",
        "the refresh as-of time 2025-07-06T23:58:14Z (REFRESH_CLOCK=wall) is before user 42's latest "
        "snapshot of user_activity_features (2025-07-07T00:00:00Z): nothing was written",
    ),
    422: (
        "Invalid id or body.",
        "invalid_request",
        "user_id must be a non-negative integer (at most 2^63-1), got 'abc'",
    ),
    503: (
        "A dependency is missing; the detail says what to run.",
        "service_unavailable",
        "no model `churn-model@champion` in the MLflow registry at sqlite:///data/mlflow.db: "
        "run `make train` first",
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, detail = _EXAMPLES[status]
        example: dict[str, Any] = {
            "error": code,
            "detail": detail,
            "request_id": "3f9c2a7e5b7d4a1c9e0f6b2d8a4c1e7f",
        }
        if status == 422:
            example["errors"] = [
                {"loc": ["path", "user_id"], "msg": "Input should be a valid integer", "type": "int_parsing"}
            ]
        out[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
    return out
