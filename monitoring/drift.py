"""Per-column drift with Evidently: which statistic, run as one report, read back as verdicts.

The statistic is always chosen here, never left to Evidently's auto-selection: a p-value test
(KS, chi-square, Bonferroni-corrected over the report's columns) when either side is small, a
distance (normed Wasserstein, Jensen-Shannon) otherwise, because with tens of thousands of rows
every p-value test flags differences too small to matter, while a distance measured on a few
thousand rows is mostly noise. PSI is computed beside the verdict statistic for every column, since it is
the number many teams alert on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import DriftedColumnsCount, ValueDrift

from monitoring.config import MonitoringConfig

P_VALUE_METHODS = frozenset(
    {"ks", "chisquare", "z", "fisher_exact", "t_test", "mannw", "anderson", "cramer_von_mises"}
)
NUMERICAL = "numerical"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: ``score`` is a p-value for p-value tests (drift when below the
    threshold) and a distance otherwise (drift when at or above it)."""

    column: str
    kind: str
    method: str
    statistic: str
    score: float
    threshold: float
    drifted: bool
    psi: float | None
    reference_rows: int
    current_rows: int
    reference_mean: float | None
    current_mean: float | None

    def as_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def choose_method(
    kind: str, reference_rows: int, current_rows: int, config: MonitoringConfig, tests: int = 1
) -> tuple[str, float]:
    """The statistic and threshold for one column, from its kind and the smaller side's size.

    A p-value test's significance level is ``monitoring_p_value / tests`` (Bonferroni): with
    thirty columns tested at 5% each, some column would drift in most same-distribution runs.
    """
    small = min(reference_rows, current_rows) < config.monitoring_small_sample
    alpha = config.monitoring_p_value / max(tests, 1)
    if kind == NUMERICAL:
        if small:
            return config.monitoring_small_numerical_method, alpha
        return config.monitoring_numerical_method, config.monitoring_numerical_threshold
    if small:
        return config.monitoring_small_categorical_method, alpha
    return config.monitoring_categorical_method, config.monitoring_categorical_threshold


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule: p-value tests drift when ``p <= threshold``, distances when ``d >= threshold``."""
    if not math.isfinite(score):
        return False
    return score <= threshold if method in P_VALUE_METHODS else score >= threshold


def column_kind(series: pd.Series) -> str:
    """Strings and booleans are categorical; numbers numerical."""
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return CATEGORICAL
    return NUMERICAL


def as_categorical(series: pd.Series) -> pd.Series:
    """Categories as strings with missing values kept missing (Evidently drops them)."""
    out = series.astype(object)
    return out.where(series.notna(), None).map(lambda v: v if v is None else str(v))


@dataclass
class DriftInputs:
    """Two stacked frames: each check's rows fill only its own columns (the rest is missing,
    which Evidently drops per column), so one report and one HTML page cover every check."""

    reference: pd.DataFrame
    current: pd.DataFrame
    numerical: list[str]
    categorical: list[str]


def stack(parts: Iterable[tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate (reference, current) pairs of frames with disjoint columns."""
    refs, curs = [], []
    for ref, cur in parts:
        refs.append(ref.reset_index(drop=True))
        curs.append(cur.reset_index(drop=True))
    return pd.concat(refs, ignore_index=True), pd.concat(curs, ignore_index=True)


def usable_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns with at least two values on both sides (Evidently refuses an empty side)."""
    return [c for c in columns if reference[c].notna().sum() >= 2 and current[c].notna().sum() >= 2]


def run_drift_report(
    inputs: DriftInputs,
    config: MonitoringConfig,
    *,
    dataset_columns: Sequence[str],
) -> tuple[Snapshot, list[ColumnDrift]]:
    """Run one Evidently report: a ``ValueDrift`` with the chosen statistic for every column and
    ``DriftedColumnsCount`` over ``dataset_columns`` (the input features); PSI is computed beside
    it with Evidently's own PSI test (a second ``ValueDrift`` would double the page's plots).

    Returns:
        The Evidently snapshot (for the HTML page) and the per-column verdicts.
    """
    ref, cur = inputs.reference, inputs.current
    columns = usable_columns(ref, cur, [*inputs.numerical, *inputs.categorical])
    kinds = {c: NUMERICAL for c in inputs.numerical} | {c: CATEGORICAL for c in inputs.categorical}
    counts = {c: (int(ref[c].notna().sum()), int(cur[c].notna().sum())) for c in columns}
    chosen = {c: choose_method(kinds[c], *counts[c], config, tests=len(columns)) for c in columns}

    metrics: list[Any] = []
    in_dataset = [c for c in dataset_columns if c in chosen]
    if in_dataset:
        metrics.append(
            DriftedColumnsCount(
                columns=in_dataset,
                drift_share=config.drift_share_threshold,
                per_column_method={c: chosen[c][0] for c in in_dataset},
                per_column_threshold={c: chosen[c][1] for c in in_dataset},
            )
        )
    for c in columns:
        method, threshold = chosen[c]
        metrics.append(ValueDrift(column=c, method=method, threshold=threshold))

    definition = DataDefinition(
        numerical_columns=[c for c in columns if kinds[c] == NUMERICAL],
        categorical_columns=[c for c in columns if kinds[c] == CATEGORICAL],
    )
    report = Report(metrics)
    snapshot = report.run(
        Dataset.from_pandas(cur[columns], data_definition=definition),
        Dataset.from_pandas(ref[columns], data_definition=definition),
    )
    scores = read_value_drift(snapshot.dict())

    results = []
    for c in columns:
        method, threshold = chosen[c]
        score = scores.get((c, method), float("nan"))
        numeric = kinds[c] == NUMERICAL
        results.append(
            ColumnDrift(
                column=c,
                kind=kinds[c],
                method=method,
                statistic="p_value" if method in P_VALUE_METHODS else "distance",
                score=score,
                threshold=threshold,
                drifted=is_drifted(method, score, threshold),
                psi=psi(ref[c], cur[c], kinds[c]),
                reference_rows=counts[c][0],
                current_rows=counts[c][1],
                reference_mean=float(ref[c].mean()) if numeric else None,
                current_mean=float(cur[c].mean()) if numeric else None,
            )
        )
    return snapshot, results


def psi(reference: pd.Series, current: pd.Series, kind: str) -> float | None:
    """Evidently's PSI of two samples (missing values dropped); ``None`` when a side is empty."""
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty:
        return None
    column_type = ColumnType.Numerical if kind == NUMERICAL else ColumnType.Categorical
    return float(psi_stat_test(ref, cur, column_type, None).drift_score)


def read_value_drift(snapshot_dict: dict[str, Any]) -> dict[tuple[str, str], float]:
    """``(column, method) -> score`` for every ``ValueDrift`` in an Evidently snapshot's dict."""
    out: dict[tuple[str, str], float] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        value = metric.get("value")
        out[(config["column"], config["method"])] = float(value) if value is not None else float("nan")
    return out


def expand_vectors(
    frame: pd.DataFrame, names: Mapping[str, Sequence[str]] | None = None, max_len: int = 32
) -> pd.DataFrame:
    """Replace each short vector column (lists or arrays of at most ``max_len`` numbers) by one
    numerical column per component, ``name[label]``; longer vectors are dropped (they are
    compared as embeddings instead)."""
    names = names or {}
    out: dict[str, Any] = {}
    for col in frame.columns:
        series = frame[col]
        first = series.dropna().head(1)
        if not first.empty and isinstance(first.iloc[0], list | tuple | np.ndarray):
            width = len(first.iloc[0])
            if width > max_len:
                continue
            rows = [
                np.asarray(v, dtype=float)
                if isinstance(v, list | tuple | np.ndarray)
                else np.full(width, np.nan)
                for v in series
            ]
            matrix = np.vstack(rows)
            labels = list(names.get(col, [str(i) for i in range(width)]))
            for i in range(width):
                out[f"{col}[{labels[i]}]"] = matrix[:, i]
        else:
            out[col] = series
    return pd.DataFrame(out, index=frame.index)
