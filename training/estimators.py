"""The four churn models, their settings and how each is saved.

All four read the same design matrix (``churn_model_pyfunc.design_matrix``) and are fitted on
the training period only; the three boosted-tree libraries stop early on the validation period's
log loss (patience ``EARLY_STOPPING_ROUNDS``), the logistic regression converges instead. Each
library uses ``THREADS`` threads.

Class imbalance (about 10% churners) is left as it is on purpose: the product needs calibrated
probabilities (risk bands, expected churners), re-weighting would distort them, and ROC-AUC and
PR-AUC do not depend on it. Nothing is resampled, so there is nothing to fit on the wrong period.

Settings, chosen for a few hundred thousand rows and about 60 columns on 2 cores:

* ``logistic_regression``: median imputation, ``arcsinh`` compression (counts, spend and days
  are heavy-tailed; ``arcsinh`` is log-like yet defined at 0 and for negative trends), standard
  scaling, L2 logistic regression (C=0.5, lbfgs).
* ``lightgbm``: 31 leaves, learning rate 0.05, at least 100 rows per leaf, 80% row and column
  sampling, L2 1.0.
* ``xgboost``: histogram trees of depth 5, learning rate 0.05, min child weight 5, 80% row and
  column sampling, L2 1.0.
* ``catboost``: symmetric trees of depth 6, learning rate 0.08, L2 3, 128 borders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from churnfs.errors import InvalidInputError
from training.churn_model_pyfunc import MODEL_FILES

logger = logging.getLogger(__name__)

MODEL_KINDS = ("logistic_regression", "lightgbm", "xgboost", "catboost")
THREADS = 2
MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50
SEED = 0

LOGISTIC_PARAMS: dict[str, Any] = {"C": 0.5, "max_iter": 2000, "solver": "lbfgs"}
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "binary_logloss",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": THREADS,
    "seed": SEED,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
XGBOOST_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "eta": 0.05,
    "max_depth": 5,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "nthread": THREADS,
    "seed": SEED,
}
CATBOOST_PARAMS: dict[str, Any] = {
    "loss_function": "Logloss",
    "eval_metric": "Logloss",
    "learning_rate": 0.08,
    "depth": 6,
    "l2_leaf_reg": 3.0,
    "border_count": 128,
    "thread_count": THREADS,
    "random_seed": SEED,
}


@dataclass
class FittedEstimator:
    """A fitted model in its library's own type, with the settings it was fitted with."""

    kind: str
    estimator: Any
    params: dict[str, Any]
    best_iteration: int | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def check_model_kinds(models: Any) -> list[str]:
    """Validate a user's model list (None means all four)."""
    if models is None:
        return list(MODEL_KINDS)
    chosen = [str(m) for m in models]
    unknown = [m for m in chosen if m not in MODEL_KINDS]
    if unknown or not chosen:
        raise InvalidInputError(f"unknown model(s) {unknown or chosen}: choose from {', '.join(MODEL_KINDS)}")
    return list(dict.fromkeys(chosen))


def fit_estimator(
    kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    columns: list[str],
    max_rounds: int = MAX_ROUNDS,
) -> FittedEstimator:
    """Fit one model kind on the training rows, early-stopping on the validation rows."""
    began = time.perf_counter()
    if kind == "logistic_regression":
        fitted = _fit_logistic(x_train, y_train)
    elif kind == "lightgbm":
        fitted = _fit_lightgbm(x_train, y_train, x_valid, y_valid, columns, max_rounds)
    elif kind == "xgboost":
        fitted = _fit_xgboost(x_train, y_train, x_valid, y_valid, columns, max_rounds)
    elif kind == "catboost":
        fitted = _fit_catboost(x_train, y_train, x_valid, y_valid, max_rounds)
    else:
        raise InvalidInputError(f"unknown model kind {kind!r}: choose from {', '.join(MODEL_KINDS)}")
    fitted.seconds = time.perf_counter() - began
    logger.info("fitted %s in %.1f s (best iteration %s)", kind, fitted.seconds, fitted.best_iteration)
    return fitted


def logistic_pipeline(params: Mapping[str, Any] | None = None) -> Any:
    """The scikit-learn pipeline of the logistic regression (unfitted)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("compress", FunctionTransformer(np.arcsinh, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(**{**LOGISTIC_PARAMS, **(params or {})})),
        ]
    )


def _fit_logistic(x_train: np.ndarray, y_train: np.ndarray) -> FittedEstimator:
    pipeline = logistic_pipeline()
    pipeline.fit(x_train, y_train)
    iterations = int(np.max(pipeline[-1].n_iter_))
    return FittedEstimator(
        kind="logistic_regression",
        estimator=pipeline,
        params={**LOGISTIC_PARAMS, "imputation": "median", "compress": "arcsinh", "scaling": "standard"},
        best_iteration=iterations,
        seconds=0.0,
    )


def _fit_lightgbm(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    columns: list[str],
    max_rounds: int,
) -> FittedEstimator:
    import lightgbm as lgb

    train_set = lgb.Dataset(x_train, label=y_train, feature_name=columns, free_raw_data=True)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set)
    booster = lgb.train(
        LIGHTGBM_PARAMS,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    # keep only the trees up to the best iteration, so the saved model is the evaluated one
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return FittedEstimator(
        kind="lightgbm",
        estimator=booster,
        params={**LIGHTGBM_PARAMS, "max_rounds": max_rounds, "early_stopping_rounds": EARLY_STOPPING_ROUNDS},
        best_iteration=best,
        seconds=0.0,
    )


def _fit_xgboost(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    columns: list[str],
    max_rounds: int,
) -> FittedEstimator:
    import xgboost as xgb

    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=columns, nthread=THREADS)
    dvalid = xgb.DMatrix(x_valid, label=y_valid, feature_names=columns, nthread=THREADS)
    booster = xgb.train(
        XGBOOST_PARAMS,
        dtrain,
        num_boost_round=max_rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    best = int(booster.best_iteration) + 1
    booster = booster[:best]
    return FittedEstimator(
        kind="xgboost",
        estimator=booster,
        params={**XGBOOST_PARAMS, "max_rounds": max_rounds, "early_stopping_rounds": EARLY_STOPPING_ROUNDS},
        best_iteration=best,
        seconds=0.0,
    )


def _fit_catboost(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    max_rounds: int,
) -> FittedEstimator:
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        **CATBOOST_PARAMS,
        iterations=max_rounds,
        od_type="Iter",
        od_wait=EARLY_STOPPING_ROUNDS,
        use_best_model=True,
        verbose=False,
        allow_writing_files=False,  # CatBoost otherwise writes catboost_info/ into the working directory
    )
    model.fit(x_train, y_train, eval_set=(x_valid, y_valid))
    best = int(model.get_best_iteration()) + 1
    return FittedEstimator(
        kind="catboost",
        estimator=model,
        params={**CATBOOST_PARAMS, "max_rounds": max_rounds, "early_stopping_rounds": EARLY_STOPPING_ROUNDS},
        best_iteration=best,
        seconds=0.0,
    )


def save_estimator(fitted: FittedEstimator, model_dir: Path) -> Path:
    """Write the estimator in its library's own format into ``model_dir`` (``MODEL_FILES``)."""
    path = Path(model_dir) / MODEL_FILES[fitted.kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fitted.kind == "logistic_regression":
        import joblib

        joblib.dump(fitted.estimator, path)
    elif fitted.kind == "lightgbm" or fitted.kind == "xgboost":
        fitted.estimator.save_model(str(path))
    elif fitted.kind == "catboost":
        fitted.estimator.save_model(str(path), format="cbm")
    return path
