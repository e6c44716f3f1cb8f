"""Logging set-up, called once by the entry points (CLI, API), never at import time.

A user should see stage progress, results and real problems. Third-party libraries add lines
that are none of these: Feast logs ``Registry cache expired, so refreshing`` on every registry
read, MLflow narrates its own steps at INFO, and libraries' own deprecated calls inside them
(ibis calling DuckDB, MLflow calling SQLAlchemy) raise warnings no churnfs user can act on.
``configure_logging`` demotes that noise to DEBUG (``churnfs -v`` shows it) and keeps every
warning raised from churnfs code and every third-party warning that is not a deprecation.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

QUIET_LOGGERS: dict[str, int] = {
    "feast.infra.registry": logging.WARNING,  # "Registry cache expired, so refreshing", per read
    "mlflow": logging.WARNING,  # "Validating input example against model signature", ...
    "sentence_transformers": logging.WARNING,  # "Loading SentenceTransformer model from ..."
    # Warns that no model.onnx exists and that the export should be saved: the embedding step
    # exports on purpose, saves it under DATA_DIR/artifacts and logs that itself.
    "sentence_transformers.backend": logging.ERROR,
    "urllib3": logging.WARNING,
    "httpx": logging.WARNING,
    "filelock": logging.WARNING,
    "numba": logging.WARNING,
    "matplotlib": logging.WARNING,
    "alembic": logging.WARNING,
    "py4j": logging.WARNING,  # "Closing down clientserver connection", per Spark session
}
"""Third-party loggers and the level below which their records are dropped (unless DEBUG)."""

THIRD_PARTY_NOISE = ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning", "TracerWarning")
"""Warning categories (and subclasses) logged at DEBUG when raised inside a third-party
library. ``TracerWarning`` comes from tracing the embedding model once for its ONNX export,
which the embedding step checks against torch itself."""

OWN_PACKAGES = frozenset(
    {"churnfs", "datagen", "transformations", "feature_repo", "training", "serving", "monitoring", "bench"}
)
_SITE_PACKAGES = ("site-packages", "dist-packages")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _reserved = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._reserved and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RepeatedThirdPartyWarnings(logging.Filter):
    """Let a third-party warning through once per process; its repeats add nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or is_own_logger(record.name):
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def is_own_logger(name: str) -> bool:
    """Whether a logger belongs to a churnfs package (``serving.access``, ``churnfs.store``, ...)."""
    return name.split(".", 1)[0] in OWN_PACKAGES


def is_third_party_file(filename: str) -> bool:
    """Whether a warning was raised from an installed library rather than from churnfs code."""
    from churnfs.settings import PROJECT_ROOT

    path = Path(filename)
    return any(part in _SITE_PACKAGES for part in path.parts) or not path.is_relative_to(PROJECT_ROOT)


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the churnfs processes: through logging, third-party
    deprecations at DEBUG."""
    names = {cls.__name__ for cls in category.__mro__}
    level = (
        logging.DEBUG if names & set(THIRD_PARTY_NOISE) and is_third_party_file(filename) else logging.WARNING
    )
    logging.getLogger("py.warnings").log(level, "%s:%d: %s: %s", filename, lineno, category.__name__, message)


def _route_mlflow_logs_here() -> None:
    """MLflow gives its loggers a handler of their own that bypasses the root's (its own format,
    no JSON, no filters). ``MLFLOW_CONFIGURE_LOGGING=false`` stops that for a later import;
    an earlier one is undone here."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    mlflow_logger = logging.getLogger("mlflow")
    if os.environ["MLFLOW_CONFIGURE_LOGGING"].lower() == "false":
        mlflow_logger.handlers[:] = []
        mlflow_logger.propagate = True


def configure_logging(level: int = logging.INFO, json_logs: bool = False) -> None:
    """Human-readable logs on stderr for the CLI; JSON lines for the service. Below DEBUG level,
    third-party noise is dropped (see the module docstring); at DEBUG everything shows."""
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _route_mlflow_logs_here()
    warnings.showwarning = _log_warning
    quiet = level > logging.DEBUG
    for name, threshold in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(threshold if quiet else logging.NOTSET)
    if quiet:
        # transformers logs through a handler of its own, configured from this on first import.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        if not json_logs:
            # A stage is a short process: a repeated third-party warning is noise there. The
            # service keeps every line (its logs are aggregated and counted elsewhere).
            handler.addFilter(RepeatedThirdPartyWarnings())
