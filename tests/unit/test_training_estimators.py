"""The four model kinds (training/estimators.py) on a tiny synthetic problem: fitted on the
training rows only, saved in their own formats, read back by the pyfunc runtime unchanged, and
their contributions explaining the log-odds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnfs.errors import InvalidInputError
from training.churn_model_pyfunc import ChurnModel, FeatureSpec, InputFeature
from training.estimators import MODEL_KINDS, check_model_kinds, fit_estimator, save_estimator

SPEC_INPUTS = (
    InputFeature("events_30d", "int"),
    InputFeature("support_contacts_30d", "int"),
    InputFeature("shares", "vector", labels=("a", "b")),
)
COLUMNS = ["events_30d", "support_contacts_30d", "shares__a", "shares__b"]


def _problem(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    events = rng.poisson(6, rows).astype(float)
    support = rng.poisson(0.3, rows).astype(float)
    share = rng.uniform(0, 1, rows)
    logit = -2.0 - 0.25 * events + 1.2 * support + 0.5 * share
    labels = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    x = np.column_stack([events, support, share, 1 - share])
    x[rng.uniform(size=rows) < 0.02, 0] = np.nan  # a few missing values
    return x, labels


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train, y_train = _problem(1500, 1)
    x_valid, y_valid = _problem(500, 2)
    return x_train, y_train, x_valid, y_valid


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_saved_model_predicts_like_the_fitted_one_and_its_contributions_explain_the_log_odds(
    kind: str, problem: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    x_train, y_train, x_valid, y_valid = problem
    fitted = fit_estimator(kind, x_train, y_train, x_valid, y_valid, COLUMNS, max_rounds=40)
    save_estimator(fitted, tmp_path)
    spec = FeatureSpec(model_kind=kind, feature_service="churn_model_v1", inputs=SPEC_INPUTS)
    (tmp_path / "spec.json").write_text(spec.to_json())
    loaded = ChurnModel.load(tmp_path)
    in_memory = ChurnModel(spec, fitted.estimator)

    p = loaded.predict_matrix(x_valid)
    np.testing.assert_allclose(p, in_memory.predict_matrix(x_valid), rtol=1e-6, atol=1e-9)
    assert ((p > 0) & (p < 1)).all()
    # more support contacts -> more risk, as planted (the models learn the direction)
    assert p[x_valid[:, 1] >= 2].mean() > p[x_valid[:, 1] == 0].mean()

    # contributions are additive in log-odds: differences between rows equal logit differences
    contrib = loaded.contributions_matrix(x_valid)
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(contrib.sum(axis=1) - contrib[0].sum(), logit - logit[0], atol=1e-4)

    frame = pd.DataFrame(
        {
            "events_30d": x_valid[:5, 0],
            "support_contacts_30d": x_valid[:5, 1],
            "shares": [list(r) for r in x_valid[:5, 2:]],
        }
    )
    explained = loaded.predict(frame, params={"explain": True})
    assert list(explained.columns) == [
        "churn_probability",
        "contrib__events_30d",
        "contrib__support_contacts_30d",
        "contrib__shares",
    ]
    np.testing.assert_allclose(explained["contrib__shares"], contrib[:5, 2] + contrib[:5, 3], atol=1e-9)
    assert list(loaded.predict(frame).columns) == ["churn_probability"]


def test_logistic_regression_preprocessing_is_fitted_on_training_rows_only(
    problem: tuple[np.ndarray, ...],
) -> None:
    x_train, y_train, x_valid, y_valid = problem
    pipeline = fit_estimator("logistic_regression", x_train, y_train, x_valid, y_valid, COLUMNS).estimator
    medians = np.nanmedian(x_train, axis=0)
    np.testing.assert_allclose(pipeline.named_steps["impute"].statistics_, medians)
    filled = np.where(np.isnan(x_train), medians, x_train)
    np.testing.assert_allclose(pipeline.named_steps["scale"].mean_, np.arcsinh(filled).mean(axis=0))


def test_tree_models_stop_early_on_the_validation_rows(problem: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_valid, y_valid = problem
    fitted = fit_estimator("lightgbm", x_train, y_train, x_valid, y_valid, COLUMNS, max_rounds=2000)
    assert fitted.best_iteration is not None and fitted.best_iteration < 2000
    assert fitted.estimator.num_trees() == fitted.best_iteration


def test_model_list_is_validated() -> None:
    assert check_model_kinds(None) == list(MODEL_KINDS)
    assert check_model_kinds(["xgboost", "xgboost"]) == ["xgboost"]
    with pytest.raises(InvalidInputError, match="unknown model"):
        check_model_kinds(["random_forest"])
