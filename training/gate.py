"""The champion gate: a new model earns ``@champion`` on the test period, or waits as ``@challenger``.

The test period (the world's last cutoff, ``WorldSpec.test_cutoffs``) is used for nothing before
it: the model is fitted on the training period and chosen on the validation period. At the end
the chosen model and the current champion are scored on the same test rows; the new model takes
the alias when its test ROC-AUC is not worse than the champion's by more than ``GATE_TOLERANCE``.
Otherwise it is registered as ``@challenger`` and the champion stays; ``churnfs train --promote``
overrides the gate.

A champion that cannot be scored fairly on these rows (it reads features the rows lack, or its
own training or validation labels reach into the test period) is not compared: the new model
becomes the challenger and the reason says so, since replacing a model nobody measured against
is a decision for a person (``--promote``), not for the gate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from training.evaluation import classification_metrics
from training.tracking import CHALLENGER_ALIAS, CHAMPION_ALIAS, REGISTERED_MODEL, champion_version

logger = logging.getLogger(__name__)

GATE_METRIC = "roc_auc"
GATE_TOLERANCE = 0.005
"""How much lower than the champion's the new model's test ROC-AUC may be (same rows) for it to
take ``@champion``: about half a standard error at a few thousand test rows, so a retrain that is
as good as the champion is not held back by noise, while a clearly worse one is."""


@dataclass(frozen=True)
class IncumbentScore:
    """The current champion measured on the new test rows, or why it could not be."""

    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    not_comparable: str = ""


@dataclass(frozen=True)
class GateDecision:
    """Which alias the new model gets, and why (a sentence the CLI prints)."""

    alias: str
    reason: str
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def takes_champion(self) -> bool:
        return self.alias == CHAMPION_ALIAS


def decide_alias(
    new_metrics: Mapping[str, float],
    incumbent: IncumbentScore | None,
    promote: bool = False,
    tolerance: float = GATE_TOLERANCE,
) -> GateDecision:
    """``@champion`` when there is no champion, when forced, or when the new model's test ROC-AUC
    is at least the champion's on the same rows minus ``tolerance``; else ``@challenger``."""
    new = float(new_metrics[GATE_METRIC])
    if incumbent is None:
        return GateDecision(CHAMPION_ALIAS, f"no champion yet; test ROC-AUC {new:.4f}")
    version, old = incumbent.version, incumbent.metrics.get(GATE_METRIC)
    measured = (
        f"test ROC-AUC {new:.4f} vs champion v{version}'s {old:.4f} on the same rows"
        if old is not None
        else f"test ROC-AUC {new:.4f}; champion v{version} not comparable: {incumbent.not_comparable}"
    )

    def decided(alias: str, reason: str) -> GateDecision:
        return GateDecision(alias, reason, version, dict(incumbent.metrics))

    if promote:
        return decided(CHAMPION_ALIAS, f"promoted with --promote ({measured})")
    if old is None:
        return decided(CHALLENGER_ALIAS, f"{measured}; `churnfs train --promote` makes it the champion")
    if new >= old - tolerance:
        return decided(CHAMPION_ALIAS, f"not worse than the champion: {measured}")
    return decided(
        CHALLENGER_ALIAS,
        f"worse than the champion by more than {tolerance}: {measured}; "
        "`churnfs train --promote` makes it the champion anyway",
    )


def labels_seen_until(params: Mapping[str, str]) -> datetime | None:
    """The end of the last label window a logged model was fitted or early-stopped on, from its
    run's ``train_cutoffs``, ``validation_cutoffs`` and ``label_horizon_days`` parameters."""
    cutoffs = [
        datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        for key in ("train_cutoffs", "validation_cutoffs")
        for day in params.get(key, "").split(",")
        if day
    ]
    if not cutoffs or "label_horizon_days" not in params:
        return None
    return max(cutoffs) + timedelta(days=int(params["label_horizon_days"]))


SCORE_CHUNK_ROWS = 50_000
"""Test rows the incumbent champion scores at once."""


def model_input(frame: pd.DataFrame, inputs: Sequence[str]) -> pd.DataFrame:
    """The rows in a registered model's input shape: its input columns, vectors as lists."""
    out = frame[list(inputs)].copy()
    for column in out.columns:
        first = out[column].dropna().head(1)
        if not first.empty and isinstance(first.iloc[0], np.ndarray):
            out[column] = [v.tolist() if isinstance(v, np.ndarray) else v for v in out[column]]
    return out


def score_champion(
    client: Any,
    test_frame: pd.DataFrame,
    labels: np.ndarray,
    test_cutoffs: Sequence[datetime],
    name: str = REGISTERED_MODEL,
) -> IncumbentScore | None:
    """The current ``@champion``'s metrics on the test rows (None when there is no champion)."""
    import mlflow

    version = champion_version(client, name, CHAMPION_ALIAS)
    if version is None:
        return None
    number = str(version.version)
    params = client.get_run(version.run_id).data.params if version.run_id else {}
    seen_until = labels_seen_until(params)
    first_test = min(test_cutoffs)
    if seen_until is None:
        return IncumbentScore(number, not_comparable="its run records no training and validation period")
    if seen_until > first_test:
        return IncumbentScore(
            number,
            not_comparable=(
                f"it was fitted or early-stopped on labels up to {seen_until:%Y-%m-%d}, past the test "
                f"period's first cutoff {first_test:%Y-%m-%d}"
            ),
        )
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{number}")
    inputs = pyfunc.metadata.get_input_schema().input_names()
    missing = [c for c in inputs if c not in test_frame.columns]
    if missing:
        return IncumbentScore(
            number, not_comparable=f"it reads features the test rows lack ({', '.join(missing[:5])})"
        )
    scores = np.empty(len(test_frame), dtype=np.float64)
    # a slice of rows at a time: the model's input holds vectors as Python lists and MLflow checks
    # them against the schema, several times the frame's size (643,000 test rows at 1M users)
    for start in range(0, len(test_frame), SCORE_CHUNK_ROWS):
        rows = model_input(test_frame.iloc[start : start + SCORE_CHUNK_ROWS], inputs)
        predicted = pyfunc.predict(rows)["churn_probability"]
        scores[start : start + len(rows)] = predicted.to_numpy(dtype=np.float64)
    metrics = classification_metrics(labels, scores)
    logger.info("champion v%s on the test rows: %s", number, metrics)
    return IncumbentScore(number, metrics=metrics)
