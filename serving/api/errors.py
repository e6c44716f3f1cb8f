"""Exception handlers: every error leaves the service as ``ErrorResponse`` JSON with its own
status, never as a stack trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from churnfs.errors import (
    ChurnFSError,
    InvalidInputError,
    MissingDataError,
    SchemaError,
    ServiceUnavailableError,
)
from serving.errors import StaleRefreshError, UnauthorizedError, UnknownUserError

_STATUS: list[tuple[type[ChurnFSError], int, str]] = [
    (UnknownUserError, 404, "unknown_user"),
    (UnauthorizedError, 401, "unauthorized"),
    (StaleRefreshError, 409, "stale_refresh"),
    (InvalidInputError, 422, "invalid_request"),
    (ServiceUnavailableError, 503, "service_unavailable"),
    (MissingDataError, 503, "service_unavailable"),
    (SchemaError, 503, "service_unavailable"),
]
_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "service_unavailable",
}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_body(error: str, detail: str, request_id: str | None, **extra: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail, "request_id": request_id, **extra}


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("path", "body", "query", "header")]
    where = ".".join(loc) or "request"
    raw = error.get("input")
    if error.get("loc", ("",))[0] == "path" and loc == ["user_id"]:
        return f"user_id must be a non-negative integer (at most 2^63-1), got {raw!r}"
    return f"{where}: {error.get('msg', 'invalid')}"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    fields = [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    detail = "; ".join(dict.fromkeys(_describe(e) for e in errors)) or "invalid request"
    return JSONResponse(
        error_body("invalid_request", detail, _request_id(request), errors=fields), status_code=422
    )


async def churnfs_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChurnFSError)
    status, code = 500, "internal_error"
    for kind, kind_status, kind_code in _STATUS:
        if isinstance(exc, kind):
            status, code = kind_status, kind_code
            break
    headers = {"WWW-Authenticate": "APIKey"} if status == 401 else None
    return JSONResponse(error_body(code, str(exc), _request_id(request)), status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail), _request_id(request)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers (the catch-all for anything else is RequestContextMiddleware)."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ChurnFSError, churnfs_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
