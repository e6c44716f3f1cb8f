"""Monitoring thresholds and sample sizes, read from ``Settings``.

Every number that decides a verdict lives here, so a report can state the rule it applied. The
values come from ``Settings`` fields of the same name (``MONITORING_*`` and
``DRIFT_SHARE_THRESHOLD`` in the environment); the defaults below are used for any field a
``Settings`` does not carry.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from churnfs.settings import Settings

CALENDAR_FEATURES = (
    "total_events",
    "purchase_count",
    "add_to_cart_count",
    "session_count",
    "avg_session_length",
    "total_spend",
    "distinct_categories",
    "categorical_event_vector",
    "account_age_days",
    "has_reviews",
    "total_reviews",
)
"""Totals and lifetime means since the world's first day: they move with the as-of time by
construction (a later snapshot has seen more history), so their drift says the calendar moved."""

DEFAULT_KEY_FEATURES = (
    "mobile_share_30d",
    "recent_sentiment",
    "events_30d",
    "last_active_days",
)


@dataclass(frozen=True)
class MonitoringConfig:
    """The rules of one monitoring run (see docs/monitoring.md for why each default)."""

    drift_share_threshold: float = 0.3
    """Alert when at least this share of the monitored features drift."""
    monitoring_key_features: tuple[str, ...] = DEFAULT_KEY_FEATURES
    """Alert when any one of these drifts, whatever the share."""
    monitoring_calendar_features: tuple[str, ...] = CALENDAR_FEATURES
    """Reported with their verdicts but left out of the drift share (a vector's name covers all
    its components)."""
    monitoring_warmup_days: int = 60
    """The ``training`` window starts this many days after the world's start: earlier snapshots
    have truncated look-backs (``activity_trend`` reads 60 days)."""
    monitoring_max_rows: int = 50_000
    """Snapshot rows sampled per window (deterministic, by a hash of user and as-of time)."""
    monitoring_max_reviews: int = 10_000
    """Reviews sampled per window for the text checks."""
    monitoring_small_sample: int = 5_000
    """Below this many rows on either side, use KS (numerical) and chi-square (categorical): a
    normed Wasserstein distance of two same-distribution samples of 1,000 rows is often above
    0.1 by chance alone."""
    monitoring_numerical_method: str = "wasserstein"
    monitoring_numerical_threshold: float = 0.1
    monitoring_categorical_method: str = "jensenshannon"
    monitoring_categorical_threshold: float = 0.1
    monitoring_small_numerical_method: str = "ks"
    monitoring_small_categorical_method: str = "chisquare"
    monitoring_p_value: float = 0.05
    """Family-wise significance level of the small-sample tests: each column drifts when its
    p-value is at most this divided by the number of columns tested (Bonferroni)."""
    monitoring_psi_threshold: float = 0.2
    """PSI is reported beside the verdict statistic; above this it is marked as a large shift."""
    monitoring_embedding_auc_threshold: float = 0.55
    """Embedding drift (Evidently's model method): drift when the domain classifier's ROC AUC
    exceeds this."""
    monitoring_negative_sentiment: float = -0.05
    """A review is negative when its VADER compound score is at or below this (VADER's convention)."""
    monitoring_seed: int = 0
    monitoring_active_only: bool = True
    """Compare only rows of users active in the 30 days before the as-of time (events_30d > 0)."""
    monitoring_recent_reviewers_only: bool = True
    """Compare review features only over users who reviewed in the 30 days before the as-of time."""

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitoringConfig:
        """Take each field from ``settings`` where it has one, else the default."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if hasattr(settings, f.name):
                value = getattr(settings, f.name)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)
