"""``churnfs train``: point-in-time training set, four models, MLflow runs, a gated champion.

1. The calendar's three periods (``WorldSpec.periods``): train, validation, test, each period's
   label windows ending by the next period's first cutoff; checked.
2. The training set from Feast's historical retrieval of ``churn_model_v1`` at every cutoff of
   the three periods, labels from the validated ``churn_labels``; every joined row checked point
   in time against the offline files (``training.dataset``). A training or validation cutoff with
   more label rows than ``TRAIN_MAX_ROWS_PER_CUTOFF`` keeps a stratified, seeded sample of them,
   drawn before the join (``training.sampling``); the test period is never sampled, so the gate
   and the headline figure score its whole population. The runs' tags say whether it sampled.
3. One design-matrix layout fitted on the training period (``training.design``), a leak scan of
   every column against the oracle, then each model fitted on the training period and early
   stopped on the validation period (``training.estimators``).
4. Validation metrics for every model and the oracle; the chosen model is the simplest whose
   validation PR-AUC is within one bootstrap standard error of the best's (``training.selection``:
   logistic regression, then LightGBM and XGBoost, then CatBoost). Nothing so far reads a test row.
5. The test period, scored once at the end: the chosen model and the oracle on the test rows,
   and the current champion on the same rows for the gate (``training.gate``).
6. One MLflow run per model (parameters, validation metrics, plots, the pyfunc model; the chosen
   model's run also gets the test metrics); the chosen model registered as ``churn-model`` and
   given ``@champion`` if it is not worse than the champion on the test rows, else
   ``@challenger`` (``promote=True`` forces ``@champion``).
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
from training.gate import GateDecision
from training.leakage import check_ceiling, check_time_split, scan_single_features
from training.progress import progress_bar
from training.sampling import CutoffSample, SamplingReport
from training.selection import Selection, choose_model

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

    def choose(self) -> Selection:
        """Which model is chosen, on the validation period alone (never the test period): the
        simplest within one standard error of the best validation PR-AUC (``training.selection``)."""
        return choose_model({kind: r.scores for kind, r in self.results.items()}, self.labels)


@dataclass
class TestEvaluation:
    """The chosen model and the oracle on the test period's rows (scored once, at the end)."""

    kind: str
    frame: pd.DataFrame
    labels: np.ndarray
    scores: np.ndarray
    metrics: dict[str, float]
    oracle_scores: np.ndarray
    oracle_metrics: dict[str, float]

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def share_of_oracle(self) -> float:
        """The chosen model's test ROC-AUC as a share of the oracle's on the same rows."""
        return self.metrics["roc_auc"] / self.oracle_metrics["roc_auc"]


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
    period; no other rows of ``training_set`` are read. Raises ``LeakageError`` if a column or a
    model beats the oracle (see ``training.leakage``); models are saved under ``workdir/<kind>``."""
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


def score_test_period(chosen: ModelResult, test: pd.DataFrame, oracle: pd.DataFrame) -> TestEvaluation:
    """The chosen model (its saved files, read back as serving reads them) and the oracle on the
    test rows. Call it once, after the choice: its scores must not feed any decision but the
    champion gate. Raises ``LeakageError`` if the model beats the oracle there too."""
    if test.empty:
        raise MissingDataError("no label rows in the test period: regenerate the world")
    labels = binary_labels(test[LABEL])
    scores = ChurnModel.load(chosen.model_dir).predict_matrix(design_matrix(test, chosen.spec))
    metrics = classification_metrics(labels, scores)
    oracle_scores = attach_oracle(test, oracle)
    oracle_metrics = classification_metrics(labels, oracle_scores)
    check_ceiling(chosen.kind, metrics["roc_auc"], oracle_metrics["roc_auc"], period="test")
    logger.info(
        "%s on the test period: %s", chosen.kind, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    )
    return TestEvaluation(chosen.kind, test, labels, scores, metrics, oracle_scores, oracle_metrics)


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
        metrics.update({f"oracle_val_{k}": v for k, v in evaluation.oracle_metrics.items()})
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


def _test_metrics(test: TestEvaluation, decision: GateDecision) -> dict[str, float]:
    """The chosen model's run metrics for the test period: its own, the oracle's and the
    champion's on the same rows."""
    metrics = {f"test_{k}": v for k, v in test.metrics.items()}
    metrics.update({f"oracle_test_{k}": v for k, v in test.oracle_metrics.items()})
    metrics.update({f"champion_test_{k}": v for k, v in decision.champion_metrics.items()})
    metrics["test_roc_auc_share_of_oracle"] = test.share_of_oracle
    metrics["test_rows"] = test.rows
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def _sampling_report(training_set: TrainingSet) -> SamplingReport:
    """The training set's sampling report; a set built without one kept every row."""
    if training_set.sampling is not None:
        return training_set.sampling
    counts = pd.to_datetime(training_set.frame["event_timestamp"], utc=True).value_counts().sort_index()
    cutoffs = pd.DatetimeIndex(counts.index)
    rows = tuple(
        CutoffSample(t.to_pydatetime(), int(n), int(n))
        for t, n in zip(cutoffs, counts.to_numpy(), strict=True)
    )
    return SamplingReport(0, 0, rows)


def sampling_summary(sampling: SamplingReport) -> str:
    """One line for the CLI: which cutoffs were sampled, to how many rows, with which seed."""
    sampled = [c for c in sampling.cutoffs if c.sampled]
    if not sampled:
        cap = f"{sampling.max_rows_per_cutoff:,} per cutoff" if sampling.max_rows_per_cutoff else "none"
        return f"none: every label row (cap {cap})"
    cutoffs = ", ".join(f"{c.cutoff:%Y-%m-%d} {c.rows_after:,} of {c.rows_before:,}" for c in sampled)
    return f"stratified by churned, seed {sampling.seed}: {cutoffs}"


def track_and_register(
    settings: Settings,
    training_set: TrainingSet,
    evaluation: Evaluation,
    test: TestEvaluation,
    world: WorldSpec,
    feature_service_version: str,
    promote: bool = False,
) -> dict[str, Any]:
    """Log one run per model, score the current champion on the test rows and register the
    chosen model (``test.kind``) as ``@champion`` if it is not worse there, else as
    ``@challenger`` (``promote`` forces ``@champion``)."""
    from churnfs.tracking import mlflow_session
    from training.gate import decide_alias, score_champion
    from training.tracking import (
        EXPERIMENT,
        REGISTERED_MODEL,
        data_snapshot,
        ensure_experiment,
        git_commit,
        register_version,
    )

    offline_files = {p.stem: p for p in sorted(Path(settings.offline_store_dir).glob("*.parquet"))}
    session = uuid.uuid4().hex[:12]
    sampling = _sampling_report(training_set)
    tags = {
        "feature_service": training_set.feature_service,
        "feature_service_version": feature_service_version,
        "data_snapshot": data_snapshot(offline_files, _world_identity(world)),
        "world_seed": str(world.seed),
        "world_users": str(world.users),
        "git_commit": git_commit(),
        "training_session": session,
        **sampling.tags(),
    }
    common = {
        "train_rows": evaluation.train_rows,
        "validation_rows": evaluation.valid_rows,
        "test_rows": test.rows,
        "train_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in world.train_cutoffs()),
        "validation_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in world.validation_cutoffs()),
        "test_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in world.test_cutoffs()),
        "label_horizon_days": world.label_horizon_days,
        "design_columns": len(next(iter(evaluation.results.values())).spec.columns),
        **sampling.params(),
    }
    runs: dict[str, str] = {}
    uris: dict[str, str] = {}
    chosen = evaluation.results[test.kind]
    with mlflow_session(settings) as client:
        experiment_id = ensure_experiment(client, settings)
        for kind, result in evaluation.results.items():
            runs[kind], uris[kind] = _log_run(
                client, experiment_id, result, evaluation, training_set, {**tags, "model_kind": kind}, common
            )
        champion = score_champion(client, test.frame, test.labels, world.test_cutoffs())
        decision = decide_alias(test.metrics, champion, promote)
        run_id = runs[chosen.kind]
        for key, value in _test_metrics(test, decision).items():
            client.log_metric(run_id, key, value)
        client.set_tag(run_id, "gate", decision.reason)
        version_tags = {
            **tags,
            "model_kind": chosen.kind,
            "run_id": run_id,
            "val_pr_auc": f"{chosen.metrics['pr_auc']:.6f}",
            "val_roc_auc": f"{chosen.metrics['roc_auc']:.6f}",
            "test_roc_auc": f"{test.metrics['roc_auc']:.6f}",
            "test_pr_auc": f"{test.metrics['pr_auc']:.6f}",
            "gate": decision.reason,
        }
        registration = register_version(client, uris[chosen.kind], version_tags, decision.alias)
        client.set_tag(run_id, "registered_version", registration.version)
        client.set_tag(run_id, "registered_alias", registration.alias)
    logger.info(
        "registered %s v%s as @%s: %s",
        REGISTERED_MODEL,
        registration.version,
        decision.alias,
        decision.reason,
    )
    return {
        "experiment": EXPERIMENT,
        "runs": runs,
        "model name": REGISTERED_MODEL,
        "alias": registration.alias,
        "gate": decision.reason,
        "champion test metrics": decision.champion_metrics,
        "registered version": registration.version,
        "previous champion": registration.previous_version,
        "model uri": f"models:/{REGISTERED_MODEL}@{registration.alias}",
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
    promote: bool = False,
) -> dict[str, object]:
    """Build the point-in-time training set, fit the models, choose the best on the validation
    period, score it once on the test period, log everything to MLflow and register it as
    ``churn-model@champion`` if it is not worse than the current champion on the test rows, else
    as ``@challenger``.

    Args:
        models: model kinds to fit (default: all four, ``training.estimators.MODEL_KINDS``).
        max_rounds: boosting rounds at most (early stopping usually ends sooner).
        training_set: a training set built earlier for this world over the cutoffs of all three
            periods (``build_training_set``), reused as is; by default it is built here, the
            training and validation cutoffs sampled to ``settings.train_max_rows_per_cutoff``.
        promote: give the new model ``@champion`` whatever the gate says.

    Returns:
        A summary: rows, validation metrics per model and the oracle's, the chosen model's and the
        oracle's test metrics, the gate's decision and the registered version.
    """
    from churnfs.store import get_store

    began = time.perf_counter()
    kinds = check_model_kinds(models)
    world = load_world_spec(settings.raw_dir)
    periods = world.periods()
    train_cutoffs, valid_cutoffs, test_cutoffs = periods["train"], periods["validation"], periods["test"]
    check_time_split(train_cutoffs, valid_cutoffs, test_cutoffs, world.label_horizon_days)
    store = get_store(settings, check_online=False)
    if training_set is None:
        # the test period is never sampled: the gate and the headline score its whole population
        training_set = build_training_set(
            store,
            [*train_cutoffs, *valid_cutoffs, *test_cutoffs],
            FEATURE_SERVICE,
            show_progress,
            max_rows_per_cutoff=settings.train_max_rows_per_cutoff,
            sample_seed=settings.train_sample_seed,
            sampled_cutoffs=[*train_cutoffs, *valid_cutoffs],
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
        selection = evaluation.choose()
        chosen = evaluation.results[selection.chosen]
        logger.info("model choice: %s", selection.describe())
        # the test period, touched once: the chosen model only, after the choice
        test = score_test_period(chosen, training_set.rows_at(test_cutoffs), oracle)
        registry = track_and_register(
            settings,
            training_set,
            evaluation,
            test,
            world,
            feature_service_version(store, FEATURE_SERVICE),
            promote,
        )
    summary: dict[str, object] = {
        "rows": len(training_set.frame),
        "train rows": evaluation.train_rows,
        "validation rows": evaluation.valid_rows,
        "test rows": test.rows,
        "features": len(training_set.features),
        "training sample": sampling_summary(_sampling_report(training_set)),
        "metrics": {kind: r.metrics for kind, r in evaluation.results.items()},
        "oracle": evaluation.oracle_metrics,
        "fit seconds": {kind: round(r.fitted.seconds, 2) for kind, r in evaluation.results.items()},
        "best model": chosen.kind,
        "selection": selection.describe(),
        "selection standard error": round(selection.best_se, 6),
        "validation roc_auc share of oracle": round(
            chosen.metrics["roc_auc"] / evaluation.oracle_metrics["roc_auc"], 4
        ),
        "test metrics": test.metrics,
        "test oracle": test.oracle_metrics,
        "test roc_auc share of oracle": round(test.share_of_oracle, 4),
        "champion test metrics": registry["champion test metrics"],
        "alias": registry["alias"],
        "gate": registry["gate"],
        "registered version": registry["registered version"],
        "previous champion": registry["previous champion"],
        "model uri": registry["model uri"],
        "runs": registry["runs"],
        "training set seconds": round(training_set.seconds, 2),
        "seconds": round(time.perf_counter() - began, 2),
    }
    logger.info("training summary: %s", json.dumps(summary, default=str))
    return summary


def _metric_text(values: object) -> str | None:
    if not isinstance(values, Mapping) or not values:
        return None
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items())


def summary_rows(summary: Mapping[str, object]) -> dict[str, str]:
    """The summary as flat text rows for the CLI's two-column table: validation metrics one row per
    model and the oracle, then the test period's rows (the chosen model, the oracle and the
    champion it was gated against)."""
    nested = ("metrics", "oracle", "runs", "test metrics", "test oracle", "champion test metrics")
    rows = {key: str(value) for key, value in summary.items() if key not in nested}
    metrics = summary.get("metrics")
    tables: dict[str, object] = {
        **{f"validation {k}": v for k, v in (metrics.items() if isinstance(metrics, Mapping) else [])},
        "validation oracle": summary.get("oracle"),
        f"test {summary.get('best model')}": summary.get("test metrics"),
        "test oracle": summary.get("test oracle"),
        f"test champion v{summary.get('previous champion')}": summary.get("champion test metrics"),
    }
    for label, values in tables.items():
        text = _metric_text(values)
        if text is not None:
            rows[label] = text
    return rows
