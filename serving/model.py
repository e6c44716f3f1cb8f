"""The registered churn model, as serving sees it: loaded from the MLflow registry by alias,
scored on plain feature dictionaries, explained by its native contributions.

Serving never imports training code; the model's contract (docs/data-model.md, "The registered
model") is all it relies on: ``predict(df)`` gives ``churn_probability`` and
``predict(df, params={"explain": True})`` adds one ``contrib__<feature>`` column per input.

Models that ship the fast path (``predict_rows(rows, explain)`` on the loaded implementation,
see docs/serving.md) are scored through it: plain mappings in, numpy arrays out, no pandas frame
and no per-call MLflow schema enforcement, which cost most of a one-row prediction. Models
registered before it existed keep the ``predict`` path.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnfs.errors import MissingDataError, ServiceUnavailableError
from churnfs.settings import Settings
from churnfs.tracking import mlflow_session

logger = logging.getLogger(__name__)

MODEL_NAME = "churn-model"
MODEL_ALIAS = "champion"
DEFAULT_FEATURE_SERVICE = "churn_model_v1"
CONTRIB_PREFIX = "contrib__"
TOP_FEATURES = 5

RISK_BANDS: tuple[tuple[str, float], ...] = (("low", 0.2), ("medium", 0.5), ("high", math.inf))
"""Upper bounds (exclusive) of each risk band: low < 0.2 <= medium < 0.5 <= high. The 30-day
churn base rate is 5-25%, so "high" means at least about twice the typical risk."""


def risk_band(probability: float) -> str:
    """The risk band of a churn probability (``RISK_BANDS``)."""
    for band, upper in RISK_BANDS:
        if probability < upper:
            return band
    return RISK_BANDS[-1][0]


@dataclass(frozen=True)
class Score:
    """One user's score: the probability and the per-feature contributions (log-odds)."""

    churn_probability: float
    contributions: dict[str, float] = field(default_factory=dict)


def top_features(
    contributions: Mapping[str, float], features: Mapping[str, Any], k: int = TOP_FEATURES
) -> list[dict[str, Any]]:
    """The ``k`` features with the largest absolute contribution, largest first (ties by name).

    Each entry has the feature, its value (None for vectors, which are too long to be useful
    here), its contribution in log-odds and whether it raises or lowers the risk."""
    ranked = sorted(
        ((name, c) for name, c in contributions.items() if c is not None and math.isfinite(c)),
        key=lambda item: (-abs(item[1]), item[0]),
    )
    out = []
    for name, contribution in ranked[:k]:
        value = features.get(name)
        out.append(
            {
                "feature": name,
                "value": None if isinstance(value, list | tuple) else value,
                "contribution": float(contribution),
                "direction": "raises_risk" if contribution > 0 else "lowers_risk",
            }
        )
    return out


def feature_service_version(name: str) -> str | None:
    """The version a feature service carries in its name (``churn_model_v1`` -> ``v1``)."""
    match = re.search(r"_(v\d+)$", name)
    return match.group(1) if match else None


@dataclass
class ChampionModel:
    """The model behind the ``champion`` alias and what the registry says about it."""

    name: str
    version: str
    alias: str
    run_id: str | None
    feature_service: str
    pyfunc: Any
    tags: dict[str, str] = field(default_factory=dict)
    explains: bool = True
    fast_path: Callable[..., Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.fast_path is None:
            self.fast_path = fast_path_of(self.pyfunc)

    @property
    def feature_service_version(self) -> str | None:
        return self.tags.get("feature_service_version") or feature_service_version(self.feature_service)

    @property
    def scoring_path(self) -> str:
        """``rows`` (the model's ``predict_rows``) or ``pyfunc`` (MLflow ``predict`` on a frame)."""
        return "rows" if self.fast_path is not None else "pyfunc"

    def score(self, rows: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Score feature rows (one mapping per user, vectors as lists), with contributions when
        the model can explain itself."""
        rows = list(rows)
        if self.fast_path is not None:
            try:
                return self._score_rows(rows)
            except Exception:
                # The pyfunc path decides: if it refuses the rows too, the rows are at fault and
                # its error is the answer; if it scores them, the fast path is broken: drop it.
                out = self.pyfunc.predict(frame_of(rows), params={"explain": self.explains})
                scores = scores_from_output(out)
                logger.warning(
                    "model %s v%s: predict_rows failed where predict did not; using predict from now on",
                    self.name,
                    self.version,
                    exc_info=True,
                )
                self.fast_path = None
                return scores
        return self._score_frame(rows)

    def _score_rows(self, rows: list[Mapping[str, Any]]) -> list[Score]:
        assert self.fast_path is not None
        probabilities, contributions, names = self.fast_path(rows, explain=self.explains)
        probability_list = np.asarray(probabilities, dtype=np.float64).tolist()
        if contributions is None:
            return [Score(churn_probability=p) for p in probability_list]
        contribution_rows = np.asarray(contributions, dtype=np.float64).tolist()
        return [
            Score(churn_probability=p, contributions=dict(zip(names, row, strict=True)))
            for p, row in zip(probability_list, contribution_rows, strict=True)
        ]

    def _score_frame(self, rows: list[Mapping[str, Any]]) -> list[Score]:
        frame = frame_of(rows)
        if self.explains:
            try:
                out = self.pyfunc.predict(frame, params={"explain": True})
            except Exception:  # a model without the explain parameter still scores
                logger.warning(
                    "model %s v%s cannot explain; scoring without contributions",
                    self.name,
                    self.version,
                    exc_info=True,
                )
                self.explains = False
                out = self.pyfunc.predict(frame)
        else:
            out = self.pyfunc.predict(frame)
        return scores_from_output(out)


def frame_of(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The model's input frame of feature rows (the first row's keys as columns)."""
    columns = list(rows[0]) if rows else []
    return pd.DataFrame({name: [row.get(name) for row in rows] for name in columns})


def fast_path_of(pyfunc: Any) -> Callable[..., Any] | None:
    """The loaded model's ``predict_rows`` (the fast path), or None when it has none.

    MLflow keeps what the loader module returned behind ``PyFuncModel._model_impl`` (a public
    property despite its name); the registered model's runtime defines ``predict_rows`` there."""
    try:
        implementation = pyfunc._model_impl
    except AttributeError:
        return None
    method = getattr(implementation, "predict_rows", None)
    return method if callable(method) else None


def scores_from_output(out: Any) -> list[Score]:
    """Read the model's output frame: ``churn_probability`` and any ``contrib__*`` columns."""
    if not isinstance(out, pd.DataFrame):
        out = pd.DataFrame({"churn_probability": pd.Series(out).to_numpy()})
    probabilities = out["churn_probability"].to_numpy(dtype=float).tolist()
    contrib_columns = [str(c) for c in out.columns if str(c).startswith(CONTRIB_PREFIX)]
    names = [c[len(CONTRIB_PREFIX) :] for c in contrib_columns]
    # One conversion of the whole block: per-column access costs more than the model on one row.
    rows = (
        out[contrib_columns].to_numpy(dtype=float).tolist() if contrib_columns else [[]] * len(probabilities)
    )
    return [
        Score(churn_probability=p, contributions=dict(zip(names, row, strict=True)))
        for p, row in zip(probabilities, rows, strict=True)
    ]


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


def load_champion(settings: Settings) -> ChampionModel:
    """Load ``models:/churn-model@champion`` from the registry at the settings' tracking URI.

    Raises MissingDataError (with what to run) when no registry or no champion exists, and
    ServiceUnavailableError when a tracking server cannot be reached."""
    uri = settings.resolved_mlflow_tracking_uri
    sqlite = _sqlite_path(uri)
    if sqlite is not None and not sqlite.exists():
        # Opening a missing SQLite store would create an empty one: report instead.
        raise MissingDataError(f"no MLflow registry at {sqlite}: run `make train` first")

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, MODEL_ALIAS)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            raise MissingDataError(
                f"no model `{MODEL_NAME}@{MODEL_ALIAS}` in the MLflow registry at {uri}: "
                "run `make train` first"
            ) from None
        raise ServiceUnavailableError(f"MLflow registry at {uri} failed: {exc}") from None
    except Exception as exc:  # connection errors of a remote tracking server
        raise ServiceUnavailableError(f"MLflow registry at {uri} cannot be reached: {exc}") from None

    tags = dict(version.tags or {})
    if version.run_id:
        try:
            run_tags = client.get_run(version.run_id).data.tags
            tags = {**{k: v for k, v in run_tags.items() if not k.startswith("mlflow.")}, **tags}
        except Exception:  # the run's tags are a nicety; the model still serves
            logger.warning("cannot read the tags of run %s", version.run_id, exc_info=True)

    # models:/ URIs resolve against the process-wide registry URI: point it here for the load only.
    try:
        with mlflow_session(settings):
            pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version.version}")
    except Exception as exc:
        raise ServiceUnavailableError(
            f"cannot load `{MODEL_NAME}` version {version.version} from {uri}: {exc}"
        ) from None
    feature_service = (
        tags.get("feature_service") or tags.get("feast.feature_service") or DEFAULT_FEATURE_SERVICE
    )
    logger.info("loaded model %s version %s (%s)", MODEL_NAME, version.version, feature_service)
    return ChampionModel(
        name=MODEL_NAME,
        version=str(version.version),
        alias=MODEL_ALIAS,
        run_id=version.run_id,
        feature_service=feature_service,
        pyfunc=pyfunc,
        tags=tags,
    )
