"""Validation metrics and the plots logged with every run.

Every model and the oracle (the generator's true churn probability, ``raw/_oracle.parquet``) are
scored on the same validation rows with the same functions, so the oracle row is the ceiling the
models are read against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "lift_top_decile")
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "lift_top_decile": True,
}


def lift_at(labels: np.ndarray, scores: np.ndarray, fraction: float = 0.1) -> float:
    """Churn rate among the ``fraction`` highest scores divided by the overall churn rate.

    The top group has ``ceil(fraction * n)`` rows; ties at its edge are broken by row order."""
    labels = np.asarray(labels, dtype=np.float64)
    base = labels.mean()
    if base == 0:
        return float("nan")
    top = max(1, math.ceil(fraction * len(labels)))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top]
    return float(labels[order].mean() / base)


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), log loss, Brier score and top-decile lift."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "log_loss": float(log_loss(labels, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
        "lift_top_decile": lift_at(labels, scores, 0.1),
    }


def roc_figure(labels: np.ndarray, curves: Mapping[str, np.ndarray]) -> Figure:
    """ROC curves of the named score arrays (the model and the oracle) on one axis."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, validation period")
    ax.legend(loc="lower right")
    return fig


def pr_figure(labels: np.ndarray, curves: Mapping[str, np.ndarray]) -> Figure:
    """Precision-recall curves, with the base rate as the no-skill line."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for name, scores in curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(labels, scores):.3f})")
    ax.axhline(float(np.mean(labels)), linestyle=":", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, validation period")
    ax.legend(loc="upper right")
    return fig


def calibration_figure(labels: np.ndarray, curves: Mapping[str, np.ndarray], bins: int = 10) -> Figure:
    """Reliability diagram: observed churn rate per quantile bin of predicted probability."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for name, scores in curves.items():
        observed, predicted = calibration_curve(labels, scores, n_bins=bins, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    top = max(float(np.max(s)) for s in curves.values())
    ax.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration, validation")
    ax.legend(loc="upper left")
    return fig


def importance_figure(names: Sequence[str], importance: np.ndarray, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` features by mean absolute contribution."""
    order = np.argsort(-np.asarray(importance))[:top][::-1]
    fig = Figure(figsize=(6, 0.3 * len(order) + 1.2))
    ax = fig.add_subplot()
    ax.barh([names[i] for i in order], np.asarray(importance)[order])
    ax.set(xlabel="mean |contribution| (log-odds), validation", title="Feature importance")
    fig.tight_layout()
    return fig
