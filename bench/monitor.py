"""Benchmark of ``churnfs monitor``: one monitoring run over a world of ``users`` users.

Builds the pipeline through the project's APIs (``churnfs generate``, ``build_features``), writes
a prediction log in the documented format for the newest snapshot's active users, then times
``run_monitoring`` in a fresh subprocess (wall time including start-up, peak RSS) and, in the
same run, a subprocess that only imports what monitoring imports: the difference is the work.

The log's scores are STAND-INS (a fixed logistic function of activity features; the bench world
has no trained model), so the run has no champion to score the reference with: output drift is
skipped and the time excludes the champion's ``predict`` over at most ``MONITORING_MAX_ROWS``
rows.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.common import VENV_BIN, Row, marked_line, run_measured

SUITE = "monitor"
WALL_GOAL_S = 120.0
PEAK_GOAL_MB = 4096.0
RUNS = 2

SETUP_SCRIPT = """
import json
from datetime import UTC, datetime
import numpy as np, pandas as pd
from churnfs.settings import Settings
from transformations.job import build_features
settings = Settings()
build_features(settings, show_progress=False)
activity = pd.read_parquet(settings.offline_store_dir / "user_activity_features.parquet")
latest = activity[(activity.event_timestamp == activity.event_timestamp.max()) & (activity.events_30d > 0)]
score = 1 / (1 + np.exp(-(0.05 * latest.last_active_days - 0.1 * latest.events_30d + 1.0)))
now = datetime.now(UTC)
settings.prediction_log_dir.mkdir(parents=True, exist_ok=True)
features = latest.drop(columns=["user_id", "event_timestamp", "created_timestamp"])
with open(settings.prediction_log_dir / f"predictions-{now:%Y-%m-%d}.jsonl", "w") as out:
    for user, p, row in zip(latest.user_id, score, features.to_dict("records")):
        row = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
        out.write(json.dumps({"logged_at": now.isoformat(), "request_id": "bench", "user_id": int(user),
            "model_name": "churn-model", "model_version": "standin", "feature_service": "churn_model_v1",
            "source": "offline", "churn_probability": float(p), "risk_band": "low", "features": row}) + "\\n")
print("LOGGED", len(latest))
"""

MONITOR_SCRIPT = """
import json, time
start = time.perf_counter()
from churnfs.settings import Settings
from monitoring import run_monitoring
result = run_monitoring(Settings(), show_progress=False)
s = result.summary
print("SUMMARY " + json.dumps({"seconds": time.perf_counter() - start, "exit_code": result.exit_code,
    "reference_rows": s["reference"]["snapshot_rows"], "current_rows": s["current"]["snapshot_rows"],
    "reference_reviews": s["reference"]["reviews"], "current_reviews": s["current"]["reviews"],
    "drifted": s["features"]["drifted"]}))
"""

IMPORT_SCRIPT = """
import evidently, duckdb, vaderSentiment.vaderSentiment, sklearn.linear_model
from evidently.metrics import ValueDrift
import monitoring.job, monitoring.drift, monitoring.text
"""


def run(workdir: Path, users: int) -> list[Row]:
    """Build a world at ``users`` with features and a prediction log, then time monitoring and
    the bare imports side by side."""
    data_dir = workdir / "world"
    env = {"DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    python = str(VENV_BIN / "python")
    run_measured([str(VENV_BIN / "churnfs"), "generate", "--users", str(users), "--seed", "42"], env=env)
    logged = int(marked_line(run_measured([python, "-c", SETUP_SCRIPT], env=env).stdout, "LOGGED"))

    runs = [run_measured([python, "-c", MONITOR_SCRIPT], env=env) for _ in range(RUNS)]
    imports = [run_measured([python, "-c", IMPORT_SCRIPT], env=env) for _ in range(RUNS)]
    summary = json.loads(marked_line(runs[-1].stdout, "SUMMARY"))
    wall = statistics.median(r.wall_s for r in runs)
    import_wall = statistics.median(r.wall_s for r in imports)
    peak = max(r.peak_rss_mb for r in runs)
    return [
        Row(SUITE, "users", users),
        Row(SUITE, "prediction log", logged, "users", note="stand-in scores, documented format"),
        Row(SUITE, "reference rows", summary["reference_rows"], note="one snapshot per active user"),
        Row(SUITE, "current rows", summary["current_rows"]),
        Row(SUITE, "reviews compared", f"{summary['reference_reviews']} / {summary['current_reviews']}"),
        Row(
            SUITE,
            "monitor wall (median)",
            round(wall, 2),
            "s",
            f"<= {WALL_GOAL_S:.0f}",
            wall <= WALL_GOAL_S,
            note=f"median of {RUNS} fresh processes, start-up included",
        ),
        Row(SUITE, "imports only (median)", round(import_wall, 2), "s", note="same run, side by side"),
        Row(SUITE, "work beyond imports", round(wall - import_wall, 2), "s"),
        Row(SUITE, "peak RSS", round(peak, 1), "MB", f"<= {PEAK_GOAL_MB:.0f}", peak <= PEAK_GOAL_MB),
        Row(
            SUITE, "exit code", summary["exit_code"], note=f"drifted: {', '.join(summary['drifted']) or '-'}"
        ),
    ]
