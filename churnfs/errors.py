"""Typed errors a user can cause. The CLI prints their message on one line and exits non-zero;
the API turns them into a JSON body with a proper status."""


class ChurnFSError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 1


class InvalidInputError(ChurnFSError):
    """A parameter or argument the user gave is out of range or malformed."""

    exit_code = 2


class MissingDataError(ChurnFSError):
    """An input a stage needs does not exist yet (run the earlier stage first)."""


class SchemaError(ChurnFSError):
    """An input table lacks a column or has the wrong type."""


class ServiceUnavailableError(ChurnFSError):
    """A service (Redis, the registry, MLflow) cannot be reached."""
