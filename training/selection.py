"""Which fitted model becomes the chosen one: the one-standard-error rule on validation PR-AUC.

Picking the model with the highest validation PR-AUC picks noise when the candidates are close:
on the test suite's 3,000-user world the four models' PR-AUC spanned 0.341-0.358 on 2,001
validation rows (about 130 churners), and which of the top three won changed with any change to
the features. So, as in the one-standard-error rule (Hastie, Tibshirani & Friedman, *The Elements
of Statistical Learning*, 7.10), the choice is the **simplest** model that is not distinguishably
worse than the best:

1. The best is the model with the highest validation PR-AUC.
2. The best's standard error is the standard deviation of its PR-AUC over
   ``SELECTION_RESAMPLES`` bootstrap resamples of the validation rows (seeded); a model is
   eligible when its PR-AUC is at most one standard error below the best's.
3. Among the eligible models, the one of the lowest ``COMPLEXITY`` wins (logistic regression,
   then LightGBM and XGBoost, then CatBoost, the costliest to explain), then the higher PR-AUC.

Only validation rows are read; the test period is still scored once, after the choice. With
enough rows the standard errors shrink and the best model is chosen whenever it is clearly best.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SELECTION_RESAMPLES = 200
SELECTION_SEED = 0
COMPLEXITY: dict[str, int] = {"logistic_regression": 0, "lightgbm": 1, "xgboost": 1, "catboost": 2}
"""Lower is simpler, and cheaper to serve: every prediction the API makes is explained. A logistic
regression explains itself with one product per feature; LightGBM and XGBoost compute exact
TreeSHAP natively; CatBoost's exact SHAP costs about 10 ms per call on one row here (300 trees of
depth 6; its prediction takes 0.06 ms), so a CatBoost champion took the deployed ``/predict``
past its 15 ms p99 goal (docs/benchmarks.md, ``serve``). A kind not listed counts as 1."""


@dataclass(frozen=True)
class Selection:
    """The choice and what it rested on (validation rows only)."""

    chosen: str
    best: str
    values: dict[str, float]  # validation PR-AUC of each model
    best_se: float  # bootstrap standard error of the best's PR-AUC
    eligible: tuple[str, ...]  # within one standard error of the best, best first

    def describe(self) -> str:
        """One line for logs, tags and the training summary."""
        within = ", ".join(f"{k} {self.values[k]:.4f}" for k in self.eligible)
        line = (
            f"best validation PR-AUC {self.best} {self.values[self.best]:.4f} (SE {self.best_se:.4f}); "
            f"within one SE: {within}"
        )
        if self.chosen != self.best:
            line += f"; chosen {self.chosen}, the simplest of them"
        return line


def _block_ends(sorted_scores: np.ndarray) -> np.ndarray:
    """Index of the last row of each run of equal scores (scores sorted descending)."""
    change = np.flatnonzero(np.diff(sorted_scores) != 0)
    return np.append(change, len(sorted_scores) - 1)


def weighted_average_precision(labels: np.ndarray, weights: np.ndarray, ends: np.ndarray) -> float:
    """Average precision (scikit-learn's ``average_precision_score`` with ``sample_weight``) of
    rows already sorted by score, descending; ``ends`` closes each run of tied scores (one
    threshold). Linear in the rows, so a bootstrap needs no sort per resample."""
    positives = np.cumsum(weights * labels)[ends]
    seen = np.cumsum(weights)[ends]
    total = positives[-1]
    if total <= 0:
        return float("nan")
    precision = np.divide(positives, seen, out=np.zeros_like(positives), where=seen > 0)
    return float(np.sum(np.diff(positives, prepend=0.0) / total * precision))


def choose_model(
    scores: Mapping[str, np.ndarray],
    labels: np.ndarray,
    resamples: int = SELECTION_RESAMPLES,
    seed: int = SELECTION_SEED,
) -> Selection:
    """The one-standard-error choice among ``scores`` (each model's validation scores, row-aligned
    with ``labels``, 1 for churned)."""
    if not scores:
        raise ValueError("no fitted model to choose from")
    y = np.asarray(labels, dtype=np.float64)
    order = {kind: np.argsort(-np.asarray(s, dtype=np.float64), kind="stable") for kind, s in scores.items()}
    ends = {kind: _block_ends(np.asarray(scores[kind], dtype=np.float64)[o]) for kind, o in order.items()}
    ones = np.ones(len(y))
    values = {kind: weighted_average_precision(y[o], ones, ends[kind]) for kind, o in order.items()}
    best = max(values, key=lambda kind: values[kind])
    rng = np.random.default_rng(seed)
    o = order[best]
    resampled = np.empty(resamples)
    for b in range(resamples):
        weights = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(np.float64)
        resampled[b] = weighted_average_precision(y[o], weights[o], ends[best])
    best_se = float(np.nanstd(resampled, ddof=1))
    eligible = tuple(
        sorted((k for k in scores if values[best] - values[k] <= best_se), key=lambda k: -values[k])
    )
    chosen = min(eligible, key=lambda k: (COMPLEXITY.get(k, 1), -values[k]))
    return Selection(chosen, best, values, best_se, eligible)
