"""Errors of the feature store layer (each says what to do; the CLI prints it on one line)."""

from churnfs.errors import ChurnFSError, InvalidInputError, ServiceUnavailableError


class FeatureStoreConfigError(InvalidInputError):
    """feature_store.yaml is missing, not YAML, or not a valid Feast configuration."""

    exit_code = 1


class OnlineStoreUnavailableError(ServiceUnavailableError):
    """The online store (Redis) does not answer."""


class ConsistencyError(ChurnFSError):
    """The online store does not serve the offline point-in-time values."""
