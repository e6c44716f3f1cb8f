"""Errors the service raises; the app turns each into a JSON body with its own status."""

from __future__ import annotations

from churnfs.errors import ChurnFSError, ServiceUnavailableError


class UnknownUserError(ChurnFSError):
    """The user is in neither the online nor the offline store (HTTP 404)."""


class StaleRefreshError(ChurnFSError):
    """The refresh clock is behind the user's latest snapshot: the recomputed row would be older
    than the one served, so it is not written (HTTP 409)."""


class UnauthorizedError(ChurnFSError):
    """A protected route was called without the right ``X-API-Key`` (HTTP 401)."""


class OnlineStoreUnavailableError(ServiceUnavailableError):
    """The online store (Redis) cannot be reached right now; callers fall back to the offline store."""
