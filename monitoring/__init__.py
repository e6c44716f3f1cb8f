"""Monitoring: drift of inputs, features, predictions and review text, and feature freshness.

``run_monitoring(settings)`` compares the training period with the latest snapshots and the
prediction log, writes an Evidently HTML page and a JSON summary under ``DATA_DIR/reports/``
and returns a non-zero exit code when drift passes the thresholds in ``Settings``.
Heavy imports (Evidently, MLflow, Feast) happen inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitoring.job import DRIFT_EXIT_CODE, MonitoringResult, run_monitoring
    from monitoring.table import render_summary_table

__all__ = ["DRIFT_EXIT_CODE", "MonitoringResult", "render_summary_table", "run_monitoring"]


def __getattr__(name: str) -> Any:
    if name in {"DRIFT_EXIT_CODE", "MonitoringResult", "run_monitoring"}:
        from monitoring import job

        return getattr(job, name)
    if name == "render_summary_table":
        from monitoring import table

        return table.render_summary_table
    raise AttributeError(f"module 'monitoring' has no attribute {name!r}")
