"""What a world folder holds, in a few lines: the end of ``make demo`` (``churnfs summary``).

Reads only what the stages left behind (parquet footers, the MLflow registry, the prediction log
and the latest monitoring report), so it takes a second and changes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq

from churnfs.settings import Settings
from churnfs.store.embedded import describe_online_store
from churnfs.tracking import mlflow_session

RAW_TABLES = ("user_table", "event_logs", "review_table", "target_table")
OFFLINE_GROUPS = (
    "user_profile_features",
    "user_activity_features",
    "user_review_features",
    "user_review_embeddings",
    "churn_labels",
)


def _rows(path: Path) -> int | None:
    return pq.read_metadata(path).num_rows if path.exists() else None


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.0f} MB"


def _line_count(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def _champion(settings: Settings) -> str:
    """``churn-model vN (estimator), test ROC-AUC x (share of the oracle's)`` or why there is none.
    The test period is the one no model choice looked at; a model logged before it existed shows
    its validation figure, named as such."""
    uri = settings.resolved_mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return "none (run `make train`)"
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with mlflow_session(settings):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            version = client.get_model_version_by_alias("churn-model", "champion")
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return "none (run `make train`)"
            return f"registry at {uri} failed: {exc.message}"
        run = client.get_run(version.run_id) if version.run_id else None
    if run is None:
        return f"churn-model v{version.version}"
    metrics = run.data.metrics
    text = f"churn-model v{version.version} ({run.info.run_name})"
    for prefix, period in (("test", "test"), ("val", "validation")):
        if f"{prefix}_roc_auc" in metrics:
            text += f", {period} ROC-AUC {metrics[f'{prefix}_roc_auc']:.4f}"
            share = metrics.get(f"{prefix}_roc_auc_share_of_oracle")
            if share is not None:
                text += f" ({share:.3f} of the oracle's on the same rows)"
            break
    return text


def _latest_report(settings: Settings) -> tuple[str, str]:
    reports = sorted(settings.reports_dir.glob("monitoring-*.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return "none (run `make monitor`)", ""
    summary = json.loads(reports[-1].read_text(encoding="utf-8"))
    verdict = "drift found" if summary.get("exit_code") == 3 else "no alert"
    return str(summary.get("html_path", reports[-1].with_suffix(".html"))), verdict


def world_summary(settings: Settings, started_at: float | None = None) -> dict[str, str]:
    """Label -> value lines describing the world at ``settings.data_dir``."""
    out: dict[str, str] = {"world": str(settings.data_dir.resolve())}
    raw = [
        f"{name} {n:,}"
        for name in RAW_TABLES
        if (n := _rows(settings.raw_dir / f"{name}.parquet")) is not None
    ]
    out["raw tables"] = ", ".join(raw) or "none (run `make data`)"
    for group in OFFLINE_GROUPS:
        path = settings.offline_store_dir / f"{group}.parquet"
        rows = _rows(path)
        out[f"offline {group}"] = f"{rows:,} rows, {_size(path)}" if rows is not None else "not built"
    out["Feast registry"] = (
        str(settings.registry_path) if settings.registry_path.exists() else "none (run `make apply`)"
    )
    out["online store"] = describe_online_store(settings)
    out["model"] = _champion(settings)
    logged = sorted(settings.prediction_log_dir.glob("predictions-*.jsonl"))
    lines = sum(_line_count(p) for p in logged)
    out["prediction log"] = f"{lines:,} predictions in {settings.prediction_log_dir}" if logged else "empty"
    report, verdict = _latest_report(settings)
    out["drift report"] = f"{report} ({verdict})" if verdict else report
    if started_at is not None:
        minutes, seconds = divmod(int(time.time() - started_at), 60)
        out["wall time"] = f"{minutes} min {seconds:02d} s"
    return out
