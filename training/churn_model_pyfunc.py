"""The registered churn model's runtime: from a ``churn_model_v1`` feature frame to probabilities.

This module is shipped *inside* every registered model (MLflow ``code_paths``) and loaded there as
the top-level module ``churn_model_pyfunc`` by ``mlflow.pyfunc.load_model``, so serving never
imports the ``training`` package. It therefore imports nothing from this project: only numpy,
pandas and, lazily, the one library of the model's kind. Training imports the same functions
(``design_matrix``) to build its matrices, so the model sees the same columns in training and in
serving.

Besides MLflow's ``predict(frame, params)``, the model offers serving a fast path,
``predict_rows(rows, explain)``: plain feature mappings in, numpy arrays out, with no pandas and
no per-call schema enforcement (a one-row ``predict`` spends most of its time there). It builds
the same design matrix (``RowEncoder``) and calls the estimator the same way
(``ChurnModel.score_matrix``), so both paths give the same numbers.

The model directory (MLflow ``data_path``) holds ``spec.json`` (a ``FeatureSpec``) and the fitted
estimator in its library's own format (``MODEL_FILES``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPEC_FILE = "spec.json"
MODEL_FILES = {
    "logistic_regression": "model.joblib",
    "lightgbm": "model.txt",
    "xgboost": "model.json",
    "catboost": "model.cbm",
}
PROBABILITY_COLUMN = "churn_probability"
CONTRIB_PREFIX = "contrib__"
FORMAT_VERSION = 1
SMALL_BATCH_ROWS = 256
"""Up to this many rows, CatBoost scores on the calling thread alone (see ``score_matrix``)."""

# How each input feature becomes design-matrix columns:
#   int, float -> one float column; bool -> 0.0 / 1.0; missing values stay NaN
#   string     -> one 0/1 column per level seen in the training period (unknown -> all zeros)
#   vector     -> one column per component (a missing vector -> NaN in every component)
INPUT_KINDS = ("int", "float", "bool", "string", "vector")

_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


def column_suffix(label: str) -> str:
    """A design-column suffix every model library accepts (letters, digits, underscores)."""
    return _UNSAFE.sub("_", str(label)).strip("_") or "blank"


@dataclass(frozen=True)
class InputFeature:
    """One feature of the feature service as the model reads it."""

    name: str
    kind: str
    levels: tuple[str, ...] = ()  # string features: the categories, in column order
    labels: tuple[str, ...] = ()  # vector features: one label per component

    def columns(self) -> list[str]:
        """The design-matrix columns this feature becomes."""
        if self.kind == "string":
            return [f"{self.name}__{column_suffix(level)}" for level in self.levels]
        if self.kind == "vector":
            return [f"{self.name}__{column_suffix(label)}" for label in self.labels]
        return [self.name]


@dataclass(frozen=True)
class FeatureSpec:
    """What the model expects and how its design matrix is laid out (saved as ``spec.json``)."""

    model_kind: str
    feature_service: str
    inputs: tuple[InputFeature, ...]
    format_version: int = FORMAT_VERSION
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def columns(self) -> list[str]:
        return [c for f in self.inputs for c in f.columns()]

    def column_owners(self) -> np.ndarray:
        """For each design column, the index of the input feature it came from."""
        return np.array([i for i, f in enumerate(self.inputs) for _ in f.columns()], dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"spec format {data.get('format_version')} is not {FORMAT_VERSION}")
        inputs = tuple(
            InputFeature(name=f["name"], kind=f["kind"], levels=tuple(f["levels"]), labels=tuple(f["labels"]))
            for f in data["inputs"]
        )
        return cls(
            model_kind=data["model_kind"],
            feature_service=data["feature_service"],
            inputs=inputs,
            format_version=data["format_version"],
            metadata=data.get("metadata", {}),
        )


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _numeric_column(values: pd.Series) -> np.ndarray:
    if values.dtype == bool:
        return values.to_numpy(dtype=np.float64)
    if values.dtype == object:
        values = values.map(lambda v: np.nan if _is_missing(v) else float(v))
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _checked_vector(name: str, row: int, value: Any, length: int) -> np.ndarray:
    """One row's vector feature as float64, refused when its length is not the model's."""
    vector = np.asarray(value, dtype=np.float64).ravel()
    if vector.size != length:
        raise ValueError(
            f"feature {name!r}: row {row} has {vector.size} components, the model expects {length}"
        )
    return vector


def _vector_block(name: str, values: pd.Series, length: int) -> np.ndarray:
    block = np.full((len(values), length), np.nan, dtype=np.float64)
    for row, value in enumerate(values.to_numpy()):
        if _is_missing(value):
            continue
        block[row] = _checked_vector(name, row, value, length)
    return block


def design_matrix(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The float64 design matrix (rows of ``frame``, columns ``spec.columns``).

    ``frame`` holds the feature service's columns as Feast returns them (vectors as lists or
    arrays); other columns (``user_id``, timestamps, labels) are ignored."""
    missing = [f.name for f in spec.inputs if f.name not in frame.columns]
    if missing:
        raise ValueError(f"the feature frame lacks the model's input features {missing}")
    blocks: list[np.ndarray] = []
    for feature in spec.inputs:
        values = frame[feature.name]
        if feature.kind in ("int", "float", "bool"):
            blocks.append(_numeric_column(values)[:, None])
        elif feature.kind == "string":
            text = values.astype(object).to_numpy()
            blocks.append(np.stack([text == level for level in feature.levels], axis=1).astype(np.float64))
        elif feature.kind == "vector":
            blocks.append(_vector_block(feature.name, values, len(feature.labels)))
        else:
            raise ValueError(f"feature {feature.name!r} has unknown kind {feature.kind!r}")
    if not blocks:
        return np.empty((len(frame), 0), dtype=np.float64)
    return np.ascontiguousarray(np.hstack(blocks))


class RowEncoder:
    """The design matrix straight from feature mappings (one per row, vectors as lists or
    arrays), without pandas: equal to ``design_matrix`` of the same rows as a frame. The column
    layout is worked out once per spec, so encoding one row is a few dictionary reads."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.width = len(spec.columns)
        self._numeric: list[tuple[str, int]] = []
        self._strings: list[tuple[str, dict[str, list[int]]]] = []
        self._vectors: list[tuple[str, int, int]] = []
        string_columns: list[int] = []
        start = 0
        for feature in spec.inputs:
            width = len(feature.columns())
            if feature.kind in ("int", "float", "bool"):
                self._numeric.append((feature.name, start))
            elif feature.kind == "string":
                index: dict[str, list[int]] = {}
                for offset, level in enumerate(feature.levels):
                    index.setdefault(level, []).append(start + offset)
                self._strings.append((feature.name, index))
                string_columns.extend(range(start, start + width))
            elif feature.kind == "vector":
                self._vectors.append((feature.name, start, width))
            else:
                raise ValueError(f"feature {feature.name!r} has unknown kind {feature.kind!r}")
            start += width
        # One-hot columns are 0 when the value is missing or unseen, never NaN.
        self._string_columns = np.array(string_columns, dtype=np.int64)

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The float64 design matrix of ``rows`` (columns ``spec.columns``); keys other than the
        model's inputs are ignored."""
        missing = sorted({f.name for row in rows for f in self.spec.inputs if f.name not in row})
        if missing:
            raise ValueError(f"the feature rows lack the model's input features {missing}")
        x = np.full((len(rows), self.width), np.nan, dtype=np.float64)
        x[:, self._string_columns] = 0.0
        for i, row in enumerate(rows):
            out = x[i]
            for name, column in self._numeric:
                value = row[name]
                if not _is_missing(value):
                    out[column] = float(value)
            for name, index in self._strings:
                value = row[name]
                if isinstance(value, str):
                    for column in index.get(value, ()):
                        out[column] = 1.0
            for name, start, length in self._vectors:
                value = row[name]
                if _is_missing(value):
                    continue
                out[start : start + length] = _checked_vector(name, i, value, length)
        return x


def sum_by_feature(
    column_values: np.ndarray, spec: FeatureSpec, owners: np.ndarray | None = None
) -> np.ndarray:
    """Add up per-design-column values (contributions are additive) into one per input feature
    (``owners``: ``spec.column_owners()``, when the caller keeps it)."""
    owners = spec.column_owners() if owners is None else owners
    out = np.zeros((column_values.shape[0], len(spec.inputs)), dtype=np.float64)
    np.add.at(out.T, owners, column_values.T)
    return out


class ChurnModel:
    """A fitted churn model with its spec: probabilities and per-feature contributions."""

    def __init__(self, spec: FeatureSpec, estimator: Any) -> None:
        self.spec = spec
        self.estimator = estimator
        self.encoder = RowEncoder(spec)
        self._owners = spec.column_owners()
        self._feature_names = spec.feature_names

    @classmethod
    def load(cls, model_dir: str | Path) -> ChurnModel:
        model_dir = Path(model_dir)
        spec = FeatureSpec.from_json((model_dir / SPEC_FILE).read_text(encoding="utf-8"))
        return cls(spec, load_estimator(spec.model_kind, model_dir / MODEL_FILES[spec.model_kind]))

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Churn probabilities for a design matrix."""
        kind, est = self.spec.model_kind, self.estimator
        if kind == "logistic_regression":
            return np.asarray(est.predict_proba(x)[:, 1], dtype=np.float64)
        if kind == "lightgbm":
            return np.asarray(est.predict(x), dtype=np.float64)
        if kind == "xgboost":
            import xgboost as xgb

            return np.asarray(est.predict(xgb.DMatrix(x, feature_names=self.spec.columns)), dtype=np.float64)
        if kind == "catboost":
            return np.asarray(est.predict_proba(x)[:, 1], dtype=np.float64)
        raise ValueError(f"unknown model kind {kind!r}")

    def contributions_matrix(self, x: np.ndarray) -> np.ndarray:
        """Per-design-column contributions in log-odds (the bias term dropped): native tree
        contributions (TreeSHAP), or coefficient x standardised value for the logistic regression."""
        kind, est = self.spec.model_kind, self.estimator
        if kind == "logistic_regression":
            standardised = est[:-1].transform(x)
            return np.asarray(standardised * est[-1].coef_[0], dtype=np.float64)
        if kind == "lightgbm":
            return np.asarray(est.predict(x, pred_contrib=True), dtype=np.float64)[:, :-1]
        if kind == "xgboost":
            import xgboost as xgb

            dmatrix = xgb.DMatrix(x, feature_names=self.spec.columns)
            return np.asarray(est.predict(dmatrix, pred_contribs=True), dtype=np.float64)[:, :-1]
        if kind == "catboost":
            from catboost import Pool

            shap = est.get_feature_importance(Pool(x), type="ShapValues", thread_count=1)
            return np.asarray(shap, dtype=np.float64)[:, :-1]
        raise ValueError(f"unknown model kind {kind!r}")

    def score_matrix(self, x: np.ndarray, explain: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, with ``explain``, per-input-feature contributions (log-odds) of a
        design matrix. The library's input (XGBoost ``DMatrix``, CatBoost ``Pool``) is built once
        for both calls; the numbers are those of ``predict_matrix`` and ``contributions_matrix``."""
        kind, est = self.spec.model_kind, self.estimator
        contributions: np.ndarray | None = None
        if kind == "xgboost":
            import xgboost as xgb

            dmatrix = xgb.DMatrix(x, feature_names=self.spec.columns)
            probabilities = np.asarray(est.predict(dmatrix), dtype=np.float64)
            if explain:
                contributions = np.asarray(est.predict(dmatrix, pred_contribs=True), dtype=np.float64)[:, :-1]
        elif kind == "catboost":
            from catboost import Pool

            # CatBoost's own thread pool (not OpenMP, so threadpoolctl cannot cap it) spin-waits
            # after each call: on a few rows that costs more CPU than the work itself.
            threads = 1 if len(x) <= SMALL_BATCH_ROWS else -1
            pool = Pool(x, thread_count=threads)
            probabilities = np.asarray(est.predict_proba(pool, thread_count=threads)[:, 1], dtype=np.float64)
            if explain:
                shap = est.get_feature_importance(pool, type="ShapValues", thread_count=1)
                contributions = np.asarray(shap, dtype=np.float64)[:, :-1]
        else:
            probabilities = self.predict_matrix(x)
            if explain:
                contributions = self.contributions_matrix(x)
        if contributions is not None:
            contributions = sum_by_feature(contributions, self.spec, self._owners)
        return probabilities, contributions

    def predict_rows(
        self, rows: Sequence[Mapping[str, Any]], explain: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """Serving's fast path: (probabilities, contributions or None, input feature names) of
        plain feature mappings, one per row. The same numbers as ``predict`` on a frame of these
        rows, without pandas or MLflow's schema enforcement: missing values (None, NaN) of any
        kind are scored as missing instead of being refused."""
        probabilities, contributions = self.score_matrix(self.encoder.encode(rows), explain)
        return probabilities, contributions, list(self._feature_names)

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """``churn_probability`` per row; with ``params={"explain": True}`` also one
        ``contrib__<feature>`` column per input feature (log-odds)."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        explain = bool(params and params.get("explain"))
        probabilities, per_feature = self.score_matrix(design_matrix(frame, self.spec), explain)
        out = pd.DataFrame({PROBABILITY_COLUMN: probabilities}, index=frame.index)
        if per_feature is not None:
            contrib = pd.DataFrame(
                per_feature, index=frame.index, columns=[CONTRIB_PREFIX + n for n in self.spec.feature_names]
            )
            out = pd.concat([out, contrib], axis=1)
        return out

    def get_raw_model(self) -> Any:
        """The fitted estimator in its library's own type."""
        return self.estimator


def load_estimator(kind: str, path: Path) -> Any:
    """Read an estimator saved in its library's own format."""
    if kind == "logistic_regression":
        import joblib

        return joblib.load(path)
    if kind == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))
    if kind == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(path))
        booster.set_param({"nthread": 1})
        return booster
    if kind == "catboost":
        from catboost import CatBoostClassifier

        model = CatBoostClassifier()
        model.load_model(str(path))
        return model
    raise ValueError(f"unknown model kind {kind!r}")


def _load_pyfunc(data_path: str) -> ChurnModel:
    """MLflow's ``loader_module`` entry point."""
    return ChurnModel.load(data_path)
