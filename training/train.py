"""``churnfs train``: point-in-time training set, four models, MLflow runs, the champion.

1. The calendar's time split: training cutoffs (label windows end by ``train_end``) and
   validation cutoffs (a gap of at least one label horizon after them); checked.
2. The training set from Feast's historical retrieval of ``churn_model_v1``; every joined row
   checked point in time against the offline files (``training.dataset``).
3. One design-matrix layout fitted on the training period (``training.design``), a leak scan of
   every column against the oracle, then each model fitted on the training period and early
   stopped on the validation period (``training.estimators``).
4. Validation metrics for every model and the oracle; one MLflow run per model with parameters,
   metrics, tags, plots and the pyfunc model; the best by validation PR-AUC registered as
   ``churn-model`` and moved to ``@champion``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnfs.errors import MissingDataError
from churnfs.settings import Settings
from churnfs.world import WorldSpec, load_world_spec
from training.churn_model_pyfunc import ChurnModel, FeatureSpec, design_matrix, sum_by_feature
from training.dataset import FEATURE_SERVICE, KEYS, LABEL, TrainingSet, build_training_set, load_oracle
from training.design import binary_labels, fit_feature_spec, with_kind
from training.estimators import MAX_ROUNDS, FittedEstimator, check_model_kinds, fit_estimator, save_estimator
from training.evaluation import (
    calibration_figure,
    classification_metrics,
    importance_figure,
    pr_figure,
    roc_figure,
)
from training.leakage import check_ceiling, check_time_split, scan_single_features
from training.progress import progress_bar

logger = logging.getLogger(__name__)

IMPORTANCE_SAMPLE = 5000
"""Validation rows whose contributions give a model's feature-importance plot."""


@dataclass
class ModelResult:
    """One fitted model, saved in its directory, with its validation scores and metrics."""

    kind: str
    fitted: FittedEstimator
    spec: FeatureSpec
    model_dir: Path
    scores: np.ndarray
    metrics: dict[str, float]
    importance: dict[str, float] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Everything fitted and measured on one training set."""

    train_rows: int
    valid_rows: int
    labels: np.ndarray
    oracle_scores: np.ndarray
    oracle_metrics: dict[str, float]
    column_aucs: dict[str, float]
    results: dict[str, ModelResult]
    validation_frame: pd.DataFrame

    def best(self, metric: str = "pr_auc") -> ModelResult:
        return max(self.results.values(), key=lambda r: r.metrics[metric])


def attach_oracle(frame: pd.DataFrame, oracle: pd.DataFrame) -> np.ndarray:
    """The oracle's churn probability for each row of ``frame`` (same user and cutoff)."""
    merged = frame[KEYS].merge(oracle, on=KEYS, how="left", validate="one_to_one")
    if merged["churn_probability"].isna().any():
        raise MissingDataError(
            f"{int(merged['churn_probability'].isna().sum())} label rows have no oracle probability: "
            "regenerate the raw world"
        )
    return merged["churn_probability"].to_numpy(dtype=np.float64)


def fit_and_evaluate(
    training_set: TrainingSet,
    oracle: pd.DataFrame,
    train_cutoffs: Sequence[datetime],
    valid_cutoffs: Sequence[datetime],
    kinds: Sequence[str],
    workdir: Path,
    max_rounds: int = MAX_ROUNDS,
    show_progress: bool = False,
) -> Evaluation:
    """Fit each model kind on the training period and score it, and the oracle, on the validation
    period. Raises ``LeakageError`` if a column or a model beats the oracle (see
    ``training.leakage``); models are saved under ``workdir/<kind>``."""
    train = training_set.rows_at(train_cutoffs)
    valid = training_set.rows_at(valid_cutoffs)
    if train.empty or valid.empty:
        raise MissingDataError("no label rows in the training or the validation period: regenerate the world")
    y_train, y_valid = binary_labels(train[LABEL]), binary_labels(valid[LABEL])
    oracle_scores = attach_oracle(valid, oracle)
    oracle_metrics = classification_metrics(y_valid, oracle_scores)

    base = fit_feature_spec(
        train,
        training_set.features,
        model_kind=kinds[0],
        feature_service=training_set.feature_service,
        metadata={
            "train_cutoffs": [c.isoformat() for c in train_cutoffs],
            "validation_cutoffs": [c.isoformat() for c in valid_cutoffs],
        },
    )
    x_train, x_valid = design_matrix(train, base), design_matrix(valid, base)
    column_aucs = scan_single_features(x_valid, y_valid, base.columns, oracle_metrics["roc_auc"])

    results: dict[str, ModelResult] = {}
    sample = np.random.default_rng(0).permutation(len(valid))[:IMPORTANCE_SAMPLE]
    with progress_bar(show_progress) as progress:
        task = progress.add_task("fit models", total=len(kinds))
        for kind in kinds:
            progress.update(task, description=f"fit {kind}")
            spec = with_kind(base, kind)
            fitted = fit_estimator(kind, x_train, y_train, x_valid, y_valid, base.columns, max_rounds)
            model_dir = Path(workdir) / kind
            save_estimator(fitted, model_dir)
            (model_dir / "spec.json").write_text(spec.to_json(), encoding="utf-8")
            # score what will be registered: the saved files, read back the way serving reads them
            model = ChurnModel.load(model_dir)
            scores = model.predict_matrix(x_valid)
            metrics = classification_metrics(y_valid, scores)
            check_ceiling(kind, metrics["roc_auc"], oracle_metrics["roc_auc"])
            contributions = sum_by_feature(model.contributions_matrix(x_valid[sample]), spec)
            importance = dict(
                zip(spec.feature_names, np.abs(contributions).mean(axis=0).tolist(), strict=True)
            )
            results[kind] = ModelResult(kind, fitted, spec, model_dir, scores, metrics, importance)
            logger.info("%s: %s", kind, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            progress.advance(task)
    return Evaluation(
        train_rows=len(train),
        valid_rows=len(valid),
        labels=y_valid,
        oracle_scores=oracle_scores,
        oracle_metrics=oracle_metrics,
        column_aucs=column_aucs,
        results=results,
        validation_frame=valid,
    )


def _world_identity(world: WorldSpec) -> dict[str, Any]:
    return {"users": world.users, "seed": world.seed, "drift": world.drift, "start": world.start.isoformat()}


def _log_run(
    client: Any,
    experiment_id: str,
    result: ModelResult,
    evaluation: Evaluation,
    training_set: TrainingSet,
    tags: Mapping[str, str],
    common_params: Mapping[str, Any],
) -> tuple[str, str]:
    """One MLflow run for one model; returns (run id, model URI)."""
    import mlflow

    from training.tracking import input_example, log_churn_model

    labels = evaluation.labels
    curves = {result.kind: result.scores, "oracle": evaluation.oracle_scores}
    with mlflow.start_run(experiment_id=experiment_id, run_name=result.kind, tags=dict(tags)) as run:
        run_id = run.info.run_id
        params = {**common_params, "model_kind": result.kind, "best_iteration": result.fitted.best_iteration}
        params.update({f"model.{k}": v for k, v in result.fitted.params.items()})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics = {f"val_{k}": v for k, v in result.metrics.items()}
        metrics.update({f"oracle_{k}": v for k, v in evaluation.oracle_metrics.items()})
        metrics["val_roc_auc_share_of_oracle"] = (
            result.metrics["roc_auc"] / evaluation.oracle_metrics["roc_auc"]
        )
        metrics["fit_seconds"] = result.fitted.seconds
        metrics["training_set_seconds"] = training_set.seconds
        for check in training_set.checks:
            metrics[f"pit_max_feature_age_days.{check.view}"] = check.max_age_days
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        client.log_figure(run_id, roc_figure(labels, curves), "plots/roc.png")
        client.log_figure(run_id, pr_figure(labels, curves), "plots/pr.png")
        client.log_figure(run_id, calibration_figure(labels, curves), "plots/calibration.png")
        client.log_figure(
            run_id,
            importance_figure(list(result.importance), np.array(list(result.importance.values()))),
            "plots/feature_importance.png",
        )
        mlflow.log_dict(
            {
                "point_in_time": [asdict(c) for c in training_set.checks],
                "feature_importance": result.importance,
                "column_roc_auc": evaluation.column_aucs,
            },
            "diagnostics.json",
        )
        info = log_churn_model(
            result.model_dir, result.spec, input_example(evaluation.validation_frame, result.spec)
        )
    return run_id, str(info.model_uri)


def track_and_register(
    settings: Settings,
    training_set: TrainingSet,
    evaluation: Evaluation,
    world: WorldSpec,
    feature_service_version: str,
) -> dict[str, Any]:
    """Log one run per model and register the best by validation PR-AUC as the champion."""
    from churnfs.tracking import mlflow_session
    from training.tracking import (
        CHAMPION_ALIAS,
        EXPERIMENT,
        REGISTERED_MODEL,
        data_snapshot,
        ensure_experiment,
        git_commit,
        register_champion,
    )

    offline_files = {p.stem: p for p in sorted(Path(settings.offline_store_dir).glob("*.parquet"))}
    session = uuid.uuid4().hex[:12]
    tags = {
        "feature_service": training_set.feature_service,
        "feature_service_version": feature_service_version,
        "data_snapshot": data_snapshot(offline_files, _world_identity(world)),
        "world_seed": str(world.seed),
        "world_users": str(world.users),
        "git_commit": git_commit(),
        "training_session": session,
    }
    common = {
        "train_rows": evaluation.train_rows,
        "validation_rows": evaluation.valid_rows,
        "train_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in world.train_cutoffs()),
        "validation_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in world.validation_cutoffs()),
        "label_horizon_days": world.label_horizon_days,
        "design_columns": len(next(iter(evaluation.results.values())).spec.columns),
    }
    runs: dict[str, str] = {}
    uris: dict[str, str] = {}
    with mlflow_session(settings) as client:
        experiment_id = ensure_experiment(client, settings)
        for kind, result in evaluation.results.items():
            runs[kind], uris[kind] = _log_run(
                client, experiment_id, result, evaluation, training_set, {**tags, "model_kind": kind}, common
            )
        best = evaluation.best("pr_auc")
        version_tags = {
            **tags,
            "model_kind": best.kind,
            "run_id": runs[best.kind],
            "val_pr_auc": f"{best.metrics['pr_auc']:.6f}",
            "val_roc_auc": f"{best.metrics['roc_auc']:.6f}",
        }
        registration = register_champion(client, uris[best.kind], version_tags)
        client.set_tag(runs[best.kind], "registered_version", registration.version)
    return {
        "experiment": EXPERIMENT,
        "runs": runs,
        "best model": best.kind,
        "model name": REGISTERED_MODEL,
        "alias": CHAMPION_ALIAS,
        "registered version": registration.version,
        "previous champion": registration.previous_version,
        "model uri": f"models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS}",
        "tags": tags,
    }


def feature_service_version(store: Any, name: str) -> str:
    """The service's ``version`` tag, else the ``_v<N>`` suffix of its name."""
    tags = dict(getattr(store.get_feature_service(name), "tags", {}) or {})
    if "version" in tags:
        return str(tags["version"])
    suffix = name.rsplit("_v", 1)
    return suffix[1] if len(suffix) == 2 and suffix[1].isdigit() else "unknown"


def train_models(
    settings: Settings,
    show_progress: bool = True,
    models: Sequence[str] | None = None,
    max_rounds: int = MAX_ROUNDS,
    training_set: TrainingSet | None = None,
) -> dict[str, object]:
    """Build the point-in-time training set, fit and evaluate the models, log them to MLflow and
    register the best (validation PR-AUC) as ``churn-model@champion``.

    Args:
        models: model kinds to fit (default: all four, ``training.estimators.MODEL_KINDS``).
        max_rounds: boosting rounds at most (early stopping usually ends sooner).
        training_set: a training set built earlier for this world (``build_training_set``), reused
            as is; by default it is built here.

    Returns:
        A summary: rows, per-model and oracle metrics, the best model and its registered version.
    """
    from churnfs.store import get_store

    began = time.perf_counter()
    kinds = check_model_kinds(models)
    world = load_world_spec(settings.raw_dir)
    train_cutoffs, valid_cutoffs = world.train_cutoffs(), world.validation_cutoffs()
    check_time_split(train_cutoffs, valid_cutoffs, world.label_horizon_days)
    store = get_store(settings, check_online=False)
    if training_set is None:
        training_set = build_training_set(
            store, settings.raw_dir, [*train_cutoffs, *valid_cutoffs], FEATURE_SERVICE, show_progress
        )
    oracle = load_oracle(settings.raw_dir)
    with tempfile.TemporaryDirectory(prefix="churn-models-") as workdir:
        evaluation = fit_and_evaluate(
            training_set,
            oracle,
            train_cutoffs,
            valid_cutoffs,
            kinds,
            Path(workdir),
            max_rounds,
            show_progress,
        )
        registry = track_and_register(
            settings, training_set, evaluation, world, feature_service_version(store, FEATURE_SERVICE)
        )
    best = evaluation.results[registry["best model"]]
    summary: dict[str, object] = {
        "rows": len(training_set.frame),
        "train rows": evaluation.train_rows,
        "validation rows": evaluation.valid_rows,
        "features": len(training_set.features),
        "metrics": {kind: r.metrics for kind, r in evaluation.results.items()},
        "oracle": evaluation.oracle_metrics,
        "fit seconds": {kind: round(r.fitted.seconds, 2) for kind, r in evaluation.results.items()},
        "best model": best.kind,
        "best roc_auc share of oracle": round(
            best.metrics["roc_auc"] / evaluation.oracle_metrics["roc_auc"], 4
        ),
        "registered version": registry["registered version"],
        "previous champion": registry["previous champion"],
        "model uri": registry["model uri"],
        "runs": registry["runs"],
        "training set seconds": round(training_set.seconds, 2),
        "seconds": round(time.perf_counter() - began, 2),
    }
    logger.info("training summary: %s", json.dumps(summary, default=str))
    return summary


def summary_rows(summary: Mapping[str, object]) -> dict[str, str]:
    """The summary as flat text rows for the CLI's two-column table (metrics one row per model)."""
    rows: dict[str, str] = {}
    metrics = summary.get("metrics", {})
    oracle = summary.get("oracle", {})
    for key, value in summary.items():
        if key in ("metrics", "oracle", "runs"):
            continue
        rows[key] = str(value)
    table = {**dict(metrics), "oracle": oracle} if isinstance(metrics, Mapping) else {}
    for kind, values in table.items():
        rows[f"validation {kind}"] = ", ".join(f"{k} {v:.4f}" for k, v in dict(values).items())
    return rows
