"""Reference predictions: the champion model's scores on the reference snapshots.

Monitoring does not import training or serving code: it loads the registered model through
MLflow's pyfunc interface, the same contract serving uses (docs/data-model.md).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from churnfs.settings import Settings
from churnfs.tracking import mlflow_session

logger = logging.getLogger(__name__)

MODEL_NAME = "churn-model"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
NON_FEATURE_COLUMNS = ("event_timestamp", "created_timestamp", "churned")
CONTRIB_PREFIX = "contrib__"
"""The pyfunc's per-feature contribution columns with ``params={"explain": True}`` (docs/data-model.md)."""


def load_champion(settings: Settings) -> tuple[Any | None, str]:
    """The champion pyfunc and a note; ``None`` and the reason when there is none."""
    default_store = settings.data_dir / "mlflow.db"
    if settings.mlflow_tracking_uri is None and not default_store.exists():
        # Importing MLflow costs seconds, and opening the store would create it empty.
        return None, f"no MLflow store at {default_store}: run `make train` first"
    import mlflow
    import mlflow.pyfunc

    try:
        with mlflow_session(settings):
            model = mlflow.pyfunc.load_model(CHAMPION_URI)
    except Exception as exc:  # MLflow raises several types for "no such model/alias"
        logger.warning("no champion model: %s", exc)
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"no champion model at {CHAMPION_URI} ({first_line}): run `make train` first"
    return model, f"scored with {CHAMPION_URI}"


def model_input(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Snapshot rows in the model's input shape: feature columns, vectors as lists."""
    frame = snapshots.drop(columns=[c for c in NON_FEATURE_COLUMNS if c in snapshots.columns])
    for col in frame.columns:
        first = frame[col].dropna().head(1)
        if not first.empty and isinstance(first.iloc[0], np.ndarray):
            frame[col] = frame[col].map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
    return frame


def score(model: Any, snapshots: pd.DataFrame) -> np.ndarray:
    """Churn probabilities of ``model`` for each snapshot row."""
    if snapshots.empty:
        return np.empty(0)
    out = model.predict(model_input(snapshots))
    if isinstance(out, pd.DataFrame):
        return out["churn_probability"].to_numpy(dtype=float)
    return np.asarray(out, dtype=float).reshape(-1)


def feature_importance(
    model: Any, snapshots: pd.DataFrame, *, rows: int, seed: int
) -> dict[str, float] | None:
    """Mean absolute contribution (log-odds) of each input feature of ``model`` over a random
    sample of ``rows`` snapshot rows, largest first: the measure training logs as
    ``feature_importance``. ``None`` when the model gives no contributions."""
    if snapshots.empty:
        return None
    sample = snapshots.sample(min(rows, len(snapshots)), random_state=seed)
    try:
        out = model.predict(model_input(sample), params={"explain": True})
    except Exception:  # a pyfunc without the documented ``explain`` parameter
        logger.warning("the champion gives no feature contributions", exc_info=True)
        return None
    if not isinstance(out, pd.DataFrame):
        return None
    contributions = out[[c for c in out.columns if c.startswith(CONTRIB_PREFIX)]]
    if contributions.empty:
        return None
    means = contributions.abs().mean().sort_values(ascending=False)
    return {str(name)[len(CONTRIB_PREFIX) :]: float(value) for name, value in means.items()}
