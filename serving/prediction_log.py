"""The prediction log monitoring reads: JSON lines under ``DATA_DIR/predictions/``, one file
per UTC day (``predictions-YYYY-MM-DD.jsonl``), one object per scored user. The format is
fixed in docs/data-model.md ("The prediction log")."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from serving.values import plain_features


def prediction_log_path(directory: Path, logged_at: datetime) -> Path:
    """The day file a prediction made at ``logged_at`` (UTC) goes to."""
    return Path(directory) / f"predictions-{logged_at:%Y-%m-%d}.jsonl"


def prediction_record(
    *,
    logged_at: datetime,
    request_id: str,
    user_id: int,
    model_name: str,
    model_version: str,
    feature_service: str,
    source: str,
    churn_probability: float,
    risk_band: str,
    features: Mapping[str, Any],
) -> dict[str, Any]:
    """One log object, keys in the documented order."""
    return {
        "logged_at": logged_at.isoformat(),
        "request_id": request_id,
        "user_id": int(user_id),
        "model_name": model_name,
        "model_version": str(model_version),
        "feature_service": feature_service,
        "source": source,
        "churn_probability": float(churn_probability),
        "risk_band": risk_band,
        "features": plain_features(features),
    }


class PredictionLog:
    """Appends records to the day's file. One ``write`` per call on an ``O_APPEND`` descriptor,
    so lines from concurrent requests (or workers) never interleave."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records, each to the file of its own ``logged_at`` day."""
        by_file: dict[Path, list[str]] = {}
        for record in records:
            logged_at = datetime.fromisoformat(str(record["logged_at"]))
            line = json.dumps(record, separators=(",", ":"), allow_nan=False)
            by_file.setdefault(prediction_log_path(self.directory, logged_at), []).append(line)
        if not by_file:
            return
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            for path, lines in by_file.items():
                data = ("\n".join(lines) + "\n").encode("utf-8")
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
