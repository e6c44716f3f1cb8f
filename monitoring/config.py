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


@dataclass(frozen=True)
class MonitoringConfig:
    """The rules of one monitoring run (see docs/monitoring.md for why each default)."""

    drift_share_threshold: float = 0.3
    """Alert when at least this share of the monitored (non-calendar) feature columns drift."""
    monitoring_key_features: tuple[str, ...] = ()
    """Alert when any one of these drifts, whatever the share. Empty (the default): the champion's
    ``monitoring_key_feature_count`` most important non-calendar features."""
    monitoring_key_feature_count: int = 5
    """How many of the champion's features, by mean absolute contribution on the reference
    window, are key features when ``monitoring_key_features`` is empty."""
    monitoring_importance_rows: int = 2_000
    """Reference rows the champion explains to rank its features (a random sample)."""
    monitoring_alert_on_output_drift: bool = True
    """Alert when the champion's predicted churn probabilities drift (its held-out test period vs
    current)."""
    monitoring_alert_on_review_sentiment: bool = True
    """Alert when the sentiment of the reviews written in the current window drifts from the
    reference window's (the same test and floor as every column): review sentiment is a signal
    the product watches in its own right, whatever the model makes of it."""
    monitoring_calendar_features: tuple[str, ...] = CALENDAR_FEATURES
    """Reported but never judged: left out of the headline, the share and the key features (a
    vector's name covers all its components)."""
    monitoring_warmup_days: int = 60
    """The ``training`` window starts this many days after the world's start: earlier snapshots
    have truncated look-backs (``activity_trend`` reads 60 days)."""
    monitoring_max_rows: int = 50_000
    """Snapshot rows sampled per window (deterministic, by a hash of user and as-of time)."""
    monitoring_max_reviews: int = 10_000
    """Reviews sampled per window for the text checks."""
    monitoring_trend_max_reviews: int = 50_000
    """Reviews sampled (the same hash sample) from the reference window's start to the current
    window's end for the weekly sentiment trend (monitoring/trend.py)."""
    monitoring_numerical_test: str = "ks"
    """Significance test of numerical columns (two-sample Kolmogorov-Smirnov)."""
    monitoring_categorical_test: str = "chisquare"
    """Significance test of categorical columns (chi-square)."""
    monitoring_p_value: float = 0.05
    """Family-wise significance level: a column is significant when its p-value is at most this
    divided by the number of columns tested (Bonferroni)."""
    monitoring_psi_floor: float = 0.1
    """Effect-size floor: a significant column drifts only when its PSI is at least this (the
    credit-scoring convention's line between 'no real change' and 'moderate shift')."""
    monitoring_psi_bins: int = 10
    """PSI bins: the reference's deciles."""
    monitoring_embedding_auc_threshold: float = 0.55
    """Embedding drift (Evidently's model method): drift when the domain classifier's ROC AUC
    exceeds this."""
    monitoring_negative_sentiment: float = -0.05
    """A review is negative when its sentiment score is at or below this (VADER's convention, kept
    for every ``SENTIMENT_METHOD``: each puts neutral text at 0 on the same [-1, 1] scale)."""
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
