"""MLflow's tracking and registry URIs, pointed at one world for the length of a block.

MLflow keeps both URIs process-wide (and mirrors them into ``MLFLOW_TRACKING_URI``), and
``models:/`` URIs resolve against them. Every stage that talks to MLflow does so inside
``mlflow_session(settings)``, so that two worlds in one process (tests, notebooks) never read
each other's registry, and nothing is set at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from churnfs.settings import Settings

_ENV_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextmanager
def mlflow_session(settings: Settings) -> Iterator[Any]:
    """Point MLflow's tracking and registry at ``settings`` for the block (restored afterwards);
    yields an ``MlflowClient`` bound to it."""
    import mlflow
    from mlflow import MlflowClient

    uri = settings.resolved_mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in _ENV_KEYS}
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it
        mlflow.set_registry_uri(saved_env["MLFLOW_REGISTRY_URI"] or "")
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
