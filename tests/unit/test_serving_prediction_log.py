"""The prediction log's format (docs/data-model.md, "The prediction log") and its day files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from serving.prediction_log import PredictionLog, prediction_log_path, prediction_record

# The documented record keys, in order (also asserted on the records the API writes).
KEYS = [
    "logged_at",
    "request_id",
    "user_id",
    "model_name",
    "model_version",
    "feature_service",
    "source",
    "churn_probability",
    "risk_band",
    "features",
]


def _record(logged_at: datetime, user_id: int) -> dict:
    return prediction_record(
        logged_at=logged_at,
        request_id="req-1",
        user_id=user_id,
        model_name="churn-model",
        model_version="2",
        feature_service="churn_model_v1",
        source="offline",
        churn_probability=0.375,
        risk_band="medium",
        features={
            "events_30d": np.int64(4),
            "topic_vector": np.array([0.5, 0.25], dtype=np.float32),
            "income": float("nan"),
        },
    )


def test_prediction_record_has_the_documented_keys_in_order_and_plain_values() -> None:
    record = _record(datetime(2025, 7, 8, 9, 30, tzinfo=UTC), 42)
    assert list(record) == KEYS
    assert record["logged_at"] == "2025-07-08T09:30:00+00:00"
    assert record["model_version"] == "2"
    assert record["features"] == {"events_30d": 4, "topic_vector": [0.5, 0.25], "income": None}


def test_prediction_log_appends_json_lines_to_the_file_of_each_utc_day(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "predictions")
    late = datetime(2025, 7, 8, 23, 59, 59, tzinfo=UTC)
    early = datetime(2025, 7, 9, 0, 0, 1, tzinfo=UTC)
    log.append([_record(late, 1), _record(early, 2)])
    log.append([_record(late, 3)])
    day1 = prediction_log_path(tmp_path / "predictions", late)
    day2 = prediction_log_path(tmp_path / "predictions", early)
    assert day1.name == "predictions-2025-07-08.jsonl" and day2.name == "predictions-2025-07-09.jsonl"
    lines1 = [json.loads(line) for line in day1.read_text().splitlines()]
    lines2 = [json.loads(line) for line in day2.read_text().splitlines()]
    assert [r["user_id"] for r in lines1] == [1, 3]
    assert [r["user_id"] for r in lines2] == [2]
    assert all(list(r) == KEYS for r in lines1 + lines2)
