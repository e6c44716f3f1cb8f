"""Dependencies of the routes, as ``Annotated`` aliases (the full-stack FastAPI template's style)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader

from churnfs.errors import ServiceUnavailableError
from serving.errors import UnauthorizedError
from serving.schemas import MAX_USER_ID
from serving.service import ServingState

# The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool,
# a thread hop per dependency per request for what is an attribute read.


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


async def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


StateDep = Annotated[ServingState, Depends(get_state)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
UserIdPath = Annotated[
    int,
    Path(ge=0, le=MAX_USER_ID, description="The user's id (a non-negative integer).", examples=[42]),
]

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The key set in CHURNFS_API_KEY on the server."
)


async def require_api_key(state: StateDep, api_key: Annotated[str | None, Security(api_key_header)]) -> None:
    """401 unless ``X-API-Key`` matches ``CHURNFS_API_KEY``; 503 when the server has no key set."""
    expected = state.settings.churnfs_api_key
    if expected is None or not expected.get_secret_value():
        raise ServiceUnavailableError("refresh is disabled: set CHURNFS_API_KEY on the server to enable it")
    if api_key is None:
        raise UnauthorizedError("missing X-API-Key header: send the key set in CHURNFS_API_KEY")
    if not secrets.compare_digest(api_key.encode(), expected.get_secret_value().encode()):
        raise UnauthorizedError("wrong X-API-Key: send the key set in CHURNFS_API_KEY")


ApiKeyDep = Annotated[None, Depends(require_api_key)]
