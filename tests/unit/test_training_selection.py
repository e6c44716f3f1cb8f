"""The one-standard-error choice of model: its average precision is scikit-learn's, a model
within noise of the best gives way to a simpler one, and a clearly better model is chosen."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from training.selection import _block_ends, choose_model, weighted_average_precision


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_average_precision_equals_scikit_learns_with_ties_and_weights(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(500) < 0.2).astype(float)
    scores = np.round(rng.random(500) + 0.5 * labels, 1)  # many ties
    weights = rng.integers(0, 4, 500).astype(float)
    order = np.argsort(-scores, kind="stable")
    ours = weighted_average_precision(labels[order], weights[order], _block_ends(scores[order]))
    assert ours == pytest.approx(average_precision_score(labels, scores, sample_weight=weights), abs=1e-12)


def _world(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(2 * signal - 2.5)))).astype(int)
    return signal, labels


def test_a_model_within_noise_of_the_best_gives_way_to_the_simpler_one() -> None:
    signal, labels = _world(2000)
    base = signal + np.random.default_rng(5).normal(scale=0.3, size=len(signal))
    better = base.copy()
    better[np.flatnonzero(labels)[:3]] += 0.5  # three churners ranked a little higher: a hair better
    scores = {"logistic_regression": base, "xgboost": better}
    selection = choose_model(scores, labels)
    assert (
        selection.best == "xgboost" and selection.values["xgboost"] > selection.values["logistic_regression"]
    )
    assert 0 < selection.values["xgboost"] - selection.values["logistic_regression"] <= selection.best_se
    assert selection.chosen == "logistic_regression"
    assert set(selection.eligible) == {"xgboost", "logistic_regression"}
    assert "chosen logistic_regression" in selection.describe()


def test_a_clearly_better_model_is_chosen_and_the_choice_is_repeatable() -> None:
    signal, labels = _world(20000)
    rng = np.random.default_rng(6)
    scores = {
        "logistic_regression": signal + rng.normal(scale=1.5, size=len(signal)),
        "lightgbm": signal + rng.normal(scale=0.2, size=len(signal)),
        "catboost": signal + rng.normal(scale=0.25, size=len(signal)),
    }
    selection = choose_model(scores, labels)
    assert selection.chosen == selection.best == "lightgbm"
    assert "logistic_regression" not in selection.eligible
    assert choose_model(scores, labels) == selection
    assert choose_model({"lightgbm": scores["lightgbm"]}, labels).chosen == "lightgbm"
    with pytest.raises(ValueError, match="no fitted model"):
        choose_model({}, labels)


def test_catboost_within_noise_of_a_cheaper_booster_gives_way_to_it() -> None:
    signal, labels = _world(2000)
    base = signal + np.random.default_rng(7).normal(scale=0.3, size=len(signal))
    better = base.copy()
    better[np.flatnonzero(labels)[:3]] += 0.5
    selection = choose_model({"catboost": better, "lightgbm": base}, labels)
    assert selection.best == "catboost" and selection.chosen == "lightgbm"
