"""Per-cutoff sampling of the label rows, before the point-in-time join.

At a million users one cutoff has hundreds of thousands of label rows; fitting four models on every
row of the training period would take far longer than the models need (docs/benchmarks.md,
"training sample"). ``sample_per_cutoff`` keeps at most ``max_rows`` label rows of each cutoff it is
asked to sample: a stratified draw by ``churned`` (each class gets its share of the cap by largest
remainder, so the churn rate is kept to within one row) from a generator seeded by the seed and the
cutoff (a cutoff's sample does not depend on which other cutoffs are in the frame). It runs on the
entity frame, before Feast's historical retrieval, so the join reads and holds only the kept rows.
Training applies it to the training and validation periods; the test period is scored whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

LABEL = "churned"
KEYS = ["user_id", "event_timestamp"]


@dataclass(frozen=True)
class CutoffSample:
    """How many label rows of one cutoff there were, and how many were kept."""

    cutoff: datetime
    rows_before: int
    rows_after: int

    @property
    def sampled(self) -> bool:
        return self.rows_after < self.rows_before


@dataclass(frozen=True)
class SamplingReport:
    """What ``sample_per_cutoff`` did, per cutoff, and with which cap and seed (for MLflow)."""

    max_rows_per_cutoff: int
    """0: no cap."""
    seed: int
    cutoffs: tuple[CutoffSample, ...]

    @property
    def sampled(self) -> bool:
        return any(c.sampled for c in self.cutoffs)

    def tags(self) -> dict[str, str]:
        """Run tags: whether any cutoff was sampled, and the seed."""
        return {"training_sampled": "yes" if self.sampled else "no", "training_sample_seed": str(self.seed)}

    def params(self) -> dict[str, str]:
        """Run parameters: the cap and each cutoff's rows before and after (``YYYY-MM-DD:N,...``)."""
        return {
            "max_rows_per_cutoff": str(self.max_rows_per_cutoff),
            "rows_per_cutoff_before": ",".join(f"{c.cutoff:%Y-%m-%d}:{c.rows_before}" for c in self.cutoffs),
            "rows_per_cutoff_after": ",".join(f"{c.cutoff:%Y-%m-%d}:{c.rows_after}" for c in self.cutoffs),
        }


def class_quotas(counts: Sequence[int], total: int) -> list[int]:
    """Split ``total`` rows among classes in proportion to ``counts`` (largest remainder, ties to
    the earlier class), so each quota is within one row of its exact share and they sum to
    ``total``."""
    n = sum(counts)
    exact = [total * c / n for c in counts]
    quotas = [int(x) for x in exact]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _cutoff_seed(seed: int, cutoff: pd.Timestamp) -> np.random.Generator:
    return np.random.default_rng([seed, int(cutoff.value // 1_000_000_000)])


def sample_per_cutoff(
    entities: pd.DataFrame,
    max_rows: int,
    seed: int,
    cutoffs: Iterable[datetime] | None = None,
) -> tuple[pd.DataFrame, SamplingReport]:
    """At most ``max_rows`` label rows of each cutoff in ``cutoffs`` (default: every cutoff of the
    frame), stratified by ``churned`` and seeded; other cutoffs' rows, and cutoffs at or under the
    cap, are kept whole. ``max_rows=0`` keeps everything. Returns the rows sorted by user then
    cutoff, and the report."""
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    times = pd.to_datetime(entities["event_timestamp"], utc=True)
    eligible = (
        set(times.unique()) if cutoffs is None else set(pd.to_datetime(pd.Series(list(cutoffs)), utc=True))
    )
    kept: list[pd.DataFrame] = []
    report: list[CutoffSample] = []
    for cutoff in sorted(times.unique()):
        rows = entities[times == cutoff]
        if max_rows and cutoff in eligible and len(rows) > max_rows:
            rows = rows.sort_values("user_id", kind="stable")
            classes = sorted(rows[LABEL].unique())
            members = [np.flatnonzero((rows[LABEL] == c).to_numpy()) for c in classes]
            quotas = class_quotas([len(m) for m in members], max_rows)
            rng = _cutoff_seed(seed, cutoff)
            picked = np.concatenate(
                [rng.choice(m, size=q, replace=False) for m, q in zip(members, quotas, strict=True)]
            )
            sample = rows.iloc[np.sort(picked)]
            logger.info(
                "training sample at %s: %d of %d label rows (churn rate %.4f, was %.4f), seed %d",
                f"{cutoff:%Y-%m-%d}",
                len(sample),
                len(rows),
                float(sample[LABEL].mean()),
                float(rows[LABEL].mean()),
                seed,
            )
            report.append(CutoffSample(cutoff.to_pydatetime(), len(rows), len(sample)))
            rows = sample
        else:
            report.append(CutoffSample(cutoff.to_pydatetime(), len(rows), len(rows)))
        kept.append(rows)
    frame = pd.concat(kept) if kept else entities.iloc[:0]
    frame = frame.sort_values(KEYS, kind="stable").reset_index(drop=True)
    return frame, SamplingReport(max_rows, seed, tuple(report))
