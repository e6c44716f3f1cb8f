"""Per-column drift: a significance test and an effect size decide every verdict, at every scale.

A column drifts when both hold:

- **significant**: the two-sample Kolmogorov-Smirnov test (numerical) or the chi-square test
  (categorical) rejects "same distribution" at ``monitoring_p_value`` divided by the number of
  columns tested (Bonferroni), so noise in a few thousand rows does not flag a column;
- **large enough**: the population stability index (PSI) is at least ``monitoring_psi_floor``,
  so a difference too small to matter is not flagged however many rows make it significant.

The p-values are Evidently's own tests (the numbers its HTML page shows); PSI is computed here
over the reference's deciles, a binning that does not change with the sample size (Evidently's
PSI bins by Sturges' rule over both samples, so its value would mean different things at 3,000
and at 100,000 rows). Evidently draws the per-column plots of the HTML page.
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
from evidently.metrics import ValueDrift

from monitoring.config import MonitoringConfig

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
PSI_EMPTY_SHARE = 1e-4
"""The share an empty PSI bin counts as (log(0) is undefined); Evidently's choice."""


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: ``drifted`` when ``p_value <= alpha`` and ``psi >= psi_floor``."""

    column: str
    kind: str
    test: str
    p_value: float
    alpha: float
    psi: float | None
    psi_floor: float
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_mean: float | None
    current_mean: float | None

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value <= self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()} | {"significant": self.significant}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def choose_test(kind: str, config: MonitoringConfig, tests: int = 1) -> tuple[str, float]:
    """The significance test of a column kind and its level, ``monitoring_p_value / tests``
    (Bonferroni): with fifty columns tested at 5% each, some column would differ by chance in
    most same-distribution runs."""
    alpha = config.monitoring_p_value / max(tests, 1)
    test = config.monitoring_numerical_test if kind == NUMERICAL else config.monitoring_categorical_test
    return test, alpha


def is_drifted(p_value: float, alpha: float, psi_value: float | None, psi_floor: float) -> bool:
    """Significant (``p <= alpha``) and large (``PSI >= psi_floor``); never on a missing number."""
    if not math.isfinite(p_value) or psi_value is None or not math.isfinite(psi_value):
        return False
    return p_value <= alpha and psi_value >= psi_floor


def column_kind(series: pd.Series) -> str:
    """Strings and booleans are categorical; numbers numerical."""
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return CATEGORICAL
    return NUMERICAL


def as_categorical(series: pd.Series) -> pd.Series:
    """Categories as strings with missing values kept missing (Evidently drops them)."""
    out = series.astype(object)
    return out.where(series.notna(), None).map(lambda v: v if v is None else str(v))


def bin_shares(
    reference: pd.Series, current: pd.Series, kind: str, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each side's share of rows per bin (missing values dropped). Numerical bins are cut at the
    reference's quantiles (deciles for ``bins=10``; tied cut points merge, so a count feature
    gets one bin per frequent value), each bin closed on the right; categorical bins are the
    categories of either side."""
    ref, cur = reference.dropna(), current.dropna()
    ref_counts: np.ndarray
    cur_counts: np.ndarray
    if kind == NUMERICAL:
        ref_values, cur_values = ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)
        edges = np.unique(np.quantile(ref_values, np.linspace(0, 1, bins + 1)[1:-1]))
        ref_counts = np.bincount(np.searchsorted(edges, ref_values, side="left"), minlength=len(edges) + 1)
        cur_counts = np.bincount(np.searchsorted(edges, cur_values, side="left"), minlength=len(edges) + 1)
    else:
        categories = sorted(set(ref.astype(str)) | set(cur.astype(str)))
        ref_counts = ref.astype(str).value_counts().reindex(categories, fill_value=0).to_numpy()
        cur_counts = cur.astype(str).value_counts().reindex(categories, fill_value=0).to_numpy()
    return ref_counts / len(ref), cur_counts / len(cur)


def psi(reference: pd.Series, current: pd.Series, kind: str, bins: int = 10) -> float | None:
    """Population stability index, ``sum((cur - ref) * ln(cur / ref))`` over the bins of
    ``bin_shares``, an empty bin counting as ``PSI_EMPTY_SHARE``; ``None`` when a side is empty.

    The credit-scoring convention reads below 0.1 as no real change, 0.1 to 0.25 as a moderate
    shift and above 0.25 as a large one."""
    if reference.dropna().empty or current.dropna().empty:
        return None
    ref, cur = bin_shares(reference, current, kind, bins)
    ref, cur = np.maximum(ref, PSI_EMPTY_SHARE), np.maximum(cur, PSI_EMPTY_SHARE)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def p_value(reference: pd.Series, current: pd.Series, kind: str, test: str) -> float:
    """Evidently's p-value of ``test`` (``ks``, ``chisquare``, ...) on two samples (missing values
    dropped): the number its HTML page shows for the column."""
    import evidently.legacy.calculations.stattests  # noqa: F401  (registers the tests by name)
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ref, cur = reference.dropna(), current.dropna()
    column_type = ColumnType.Numerical if kind == NUMERICAL else ColumnType.Categorical
    stat_test = get_stattest(ref, cur, column_type, test)
    return float(stat_test(ref, cur, column_type, None).drift_score)


@dataclass
class DriftInputs:
    """Two stacked frames: each check's rows fill only its own columns (the rest is missing,
    which is dropped per column), so one report and one HTML page cover every check."""

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
    """Columns with at least two values on both sides (a test needs them)."""
    return [c for c in columns if reference[c].notna().sum() >= 2 and current[c].notna().sum() >= 2]


def compare_columns(inputs: DriftInputs, config: MonitoringConfig) -> list[ColumnDrift]:
    """The verdict of every usable column (the Bonferroni divisor is their number)."""
    ref, cur = inputs.reference, inputs.current
    columns = usable_columns(ref, cur, [*inputs.numerical, *inputs.categorical])
    kinds = {c: NUMERICAL for c in inputs.numerical} | {c: CATEGORICAL for c in inputs.categorical}
    results = []
    for c in columns:
        kind = kinds[c]
        test, alpha = choose_test(kind, config, tests=len(columns))
        p = p_value(ref[c], cur[c], kind, test)
        size = psi(ref[c], cur[c], kind, config.monitoring_psi_bins)
        numeric = kind == NUMERICAL
        results.append(
            ColumnDrift(
                column=c,
                kind=kind,
                test=test,
                p_value=p,
                alpha=alpha,
                psi=size,
                psi_floor=config.monitoring_psi_floor,
                drifted=is_drifted(p, alpha, size, config.monitoring_psi_floor),
                reference_rows=int(ref[c].notna().sum()),
                current_rows=int(cur[c].notna().sum()),
                reference_mean=float(ref[c].mean()) if numeric else None,
                current_mean=float(cur[c].mean()) if numeric else None,
            )
        )
    return results


def drift_page(inputs: DriftInputs, verdicts: Sequence[ColumnDrift]) -> Snapshot:
    """Evidently's report with one ``ValueDrift`` per column, in the order of ``verdicts``
    (the caller puts the columns that moved first), with the same test and level."""
    columns = [v.column for v in verdicts]
    definition = DataDefinition(
        numerical_columns=[v.column for v in verdicts if v.kind == NUMERICAL],
        categorical_columns=[v.column for v in verdicts if v.kind == CATEGORICAL],
    )
    report = Report([ValueDrift(column=v.column, method=v.test, threshold=v.alpha) for v in verdicts])
    return report.run(
        Dataset.from_pandas(inputs.current[columns], data_definition=definition),
        Dataset.from_pandas(inputs.reference[columns], data_definition=definition),
    )


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
