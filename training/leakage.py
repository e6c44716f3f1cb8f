"""Leakage checks: verified on the data, not assumed.

* ``check_time_split``: three periods in time order (train, validation, test), each period's
  label windows ``[cutoff, cutoff + horizon)`` ending by the next period's first cutoff (a gap of
  at least one horizon), so no label of one period is still open when the next begins.
* ``feature_snapshot_times`` / ``assert_features_before_cutoff``: for every joined row and every
  feature view, the earliest offline snapshot that holds exactly the values Feast returned; it
  must be as of a time at or before the row's cutoff. An as-of time ``t`` means "computed from
  data strictly before ``t``" (docs/data-model.md), so a snapshot as of the cutoff itself is
  legitimate and nothing on or after the cutoff (the label window) can have shaped it.
* ``scan_single_features`` and ``check_ceiling``: the oracle (the generator's true probability)
  bounds what any honest feature or model can reach on the same rows (validation, and the test
  period for the chosen model); one that beats it by more than sampling noise has seen the
  future, whatever its timestamps say.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from churnfs.errors import ChurnFSError, InvalidInputError

logger = logging.getLogger(__name__)

CEILING_MARGIN = 0.02
"""How far (ROC-AUC) a model or a single feature may exceed the oracle on the same rows before it
counts as leakage: a few standard errors at a few thousand rows."""


class LeakageError(ChurnFSError):
    """A feature or model saw data from at or after its cutoff."""


@dataclass(frozen=True)
class ViewSnapshotCheck:
    """What the point-in-time check found for one feature view."""

    view: str
    rows: int
    rows_without_values: int
    rows_after_cutoff: int
    rows_unmatched: int
    max_age_days: float
    median_age_days: float


def check_time_split(
    train_cutoffs: Sequence[datetime],
    valid_cutoffs: Sequence[datetime],
    test_cutoffs: Sequence[datetime],
    horizon_days: int,
) -> None:
    """Raise LeakageError unless the training labels all end by the first validation cutoff and
    the validation labels all end by the first test cutoff."""
    periods = {"training": train_cutoffs, "validation": valid_cutoffs, "test": test_cutoffs}
    empty = [name for name, cutoffs in periods.items() if not cutoffs]
    if empty:
        raise InvalidInputError(
            f"the world has no {' and no '.join(empty)} cutoffs: generate a full window (the default "
            "calendar has nine cutoffs)"
        )
    horizon = timedelta(days=horizon_days)
    names = list(periods)
    for earlier, later in pairwise(names):
        last_label_end = max(periods[earlier]) + horizon
        first_later = min(periods[later])
        if last_label_end > first_later:
            raise LeakageError(
                f"the {earlier} labels run to {last_label_end:%Y-%m-%d}, past the first {later} cutoff "
                f"{first_later:%Y-%m-%d}: the split needs a gap of at least {horizon_days} days"
            )


def feature_snapshot_times(
    joined: pd.DataFrame,
    view_files: Mapping[str, Path],
    view_features: Mapping[str, Sequence[str]],
    cutoff_column: str = "event_timestamp",
) -> pd.DataFrame:
    """For each row of ``joined`` and each view, the earliest as-of time of a snapshot of that
    view (``view_files``) holding exactly the row's values of ``view_features``.

    Returns one ``<view>`` column of timestamps per view, aligned with ``joined``'s rows: NaT where
    Feast returned no values for the view (no snapshot within its TTL) or where no snapshot holds
    them at all (``unmatched_<view>`` flags the latter)."""
    import duckdb

    out = pd.DataFrame(index=joined.index)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for view, path in view_files.items():
            features = list(view_features[view])
            if not features:
                continue
            rows = joined[["user_id", cutoff_column, *features]].copy()
            rows.columns = ["user_id", "cutoff", *[f"f{i}" for i in range(len(features))]]
            rows.insert(0, "row_id", np.arange(len(rows), dtype=np.int64))
            has_values = joined[features].notna().any(axis=1).to_numpy()
            con.register("joined_rows", rows[has_values])
            matches = " AND ".join(
                f'j.f{i} IS NOT DISTINCT FROM s."{name}"' for i, name in enumerate(features)
            )
            found = con.execute(
                f"""
                SELECT j.row_id, min(s.event_timestamp) AS snapshot_time
                FROM joined_rows j
                JOIN read_parquet(?) s ON s.user_id = j.user_id AND {matches}
                GROUP BY j.row_id
                """,
                [str(path)],
            ).fetchdf()
            con.unregister("joined_rows")
            times = pd.Series(pd.NaT, index=np.arange(len(rows)), dtype="datetime64[ns, UTC]")
            times.iloc[found["row_id"].to_numpy()] = pd.to_datetime(
                found["snapshot_time"], utc=True
            ).to_numpy()
            out[view] = times.to_numpy()
            unmatched = has_values.copy()
            unmatched[found["row_id"].to_numpy()] = False
            out[f"unmatched_{view}"] = unmatched
    finally:
        con.close()
    return out


def assert_features_before_cutoff(
    joined: pd.DataFrame,
    snapshot_times: pd.DataFrame,
    views: Sequence[str],
    cutoff_column: str = "event_timestamp",
) -> list[ViewSnapshotCheck]:
    """Raise LeakageError if any row's values exist only in snapshots after its cutoff, or if
    Feast returned values no snapshot holds; else return per-view statistics."""
    cutoff = pd.to_datetime(joined[cutoff_column], utc=True).to_numpy()
    checks = []
    for view in views:
        times = pd.to_datetime(snapshot_times[view], utc=True)
        unmatched = snapshot_times[f"unmatched_{view}"].to_numpy(dtype=bool)
        present = times.notna().to_numpy()
        after = present & (times.to_numpy() > cutoff)
        if unmatched.any():
            example = joined.loc[unmatched].iloc[0]
            raise LeakageError(
                f"{int(unmatched.sum())} joined rows of {view} hold values that no offline snapshot has "
                f"(e.g. user {example['user_id']} at {example[cutoff_column]}): the join did not read the "
                "offline store as declared; check the feature view's source"
            )
        if after.any():
            first = np.flatnonzero(after)[0]
            raise LeakageError(
                f"{int(after.sum())} joined rows of {view} carry values first known after their cutoff "
                f"(e.g. user {joined['user_id'].iloc[first]} at cutoff {joined[cutoff_column].iloc[first]} "
                f"got the snapshot as of {times.iloc[first]}): the training set peeks into the label window"
            )
        age_days = (cutoff[present] - times.to_numpy()[present]) / np.timedelta64(1, "D")
        checks.append(
            ViewSnapshotCheck(
                view=view,
                rows=len(joined),
                rows_without_values=int((~present & ~unmatched).sum()),
                rows_after_cutoff=0,
                rows_unmatched=0,
                max_age_days=float(age_days.max()) if len(age_days) else float("nan"),
                median_age_days=float(np.median(age_days)) if len(age_days) else float("nan"),
            )
        )
    return checks


def _auc_either_way(labels: np.ndarray, values: np.ndarray) -> float:
    """ROC-AUC of one column as a score, in whichever direction ranks better; NaN for a constant."""
    mask = ~np.isnan(values)
    if mask.sum() < 2 or np.unique(values[mask]).size < 2 or np.unique(labels[mask]).size < 2:
        return float("nan")
    auc = float(roc_auc_score(labels[mask], values[mask]))
    return max(auc, 1.0 - auc)


def scan_single_features(
    x: np.ndarray,
    labels: np.ndarray,
    columns: Sequence[str],
    oracle_auc: float,
    margin: float = CEILING_MARGIN,
) -> dict[str, float]:
    """Each column's own ROC-AUC on the validation rows; raise LeakageError naming the columns
    that beat the oracle by more than ``margin`` on the same rows."""
    aucs = {name: _auc_either_way(labels, x[:, i]) for i, name in enumerate(columns)}
    leaky = {n: a for n, a in aucs.items() if not np.isnan(a) and a > oracle_auc + margin}
    if leaky:
        named = ", ".join(f"{n} (ROC-AUC {a:.3f})" for n, a in sorted(leaky.items(), key=lambda kv: -kv[1]))
        raise LeakageError(
            f"on its own, {named} predicts validation churn better than the generator's true probability "
            f"(oracle ROC-AUC {oracle_auc:.3f}): it must have seen the label window; fix its as-of logic"
        )
    return aucs


def check_ceiling(
    name: str,
    model_auc: float,
    oracle_auc: float,
    margin: float = CEILING_MARGIN,
    period: str = "validation",
) -> None:
    """Raise LeakageError if a model's ROC-AUC on a period beats the oracle's on the same rows by
    more than ``margin``."""
    if model_auc > oracle_auc + margin:
        raise LeakageError(
            f"{name} reaches {period} ROC-AUC {model_auc:.3f}, above the generator's true probability "
            f"({oracle_auc:.3f}): a feature must carry information from after the cutoff"
        )
