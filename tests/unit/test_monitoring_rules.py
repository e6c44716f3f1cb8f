"""Monitoring's pure rules: windows, statistic choice, verdicts, vectors, text descriptors,
freshness ages. Tiny hand-made inputs with hand-computed expected values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from churnfs.errors import InvalidInputError
from churnfs.world import WorldSpec
from monitoring import drift, text
from monitoring.config import MonitoringConfig
from monitoring.freshness import age_verdict
from monitoring.job import feature_frame, is_calendar_feature
from monitoring.windows import resolve_window, split_by_user

WORLD = WorldSpec(users=10, seed=1, drift=True)
LATEST = datetime(2025, 7, 7, tzinfo=UTC)


def test_training_window_runs_from_warmup_to_train_end() -> None:
    window = resolve_window("training", WORLD, LATEST, warmup_days=60)
    assert window.until == datetime(2025, 4, 30, tzinfo=UTC)
    # as-of times in (after, until]: the first one included is start + 60 days, 2025-03-07
    assert window.after < datetime(2025, 3, 7, tzinfo=UTC) < window.after + timedelta(seconds=1)
    assert window.reviews_from == WORLD.start
    assert window.describe() == "training: snapshots as of 2025-03-07 to 2025-04-30"


def test_latest_window_is_the_newest_snapshot_with_thirty_days_of_reviews() -> None:
    window = resolve_window("latest", WORLD, LATEST)
    assert window.until == LATEST
    assert window.after < LATEST
    assert LATEST - window.after < timedelta(seconds=1)
    assert window.reviews_from == datetime(2025, 6, 7, tzinfo=UTC)
    assert window.describe() == "latest: the snapshot as of 2025-07-07"


def test_drift_window_starts_at_drift_start() -> None:
    window = resolve_window("drift", WORLD, LATEST)
    assert (window.after, window.until) == (datetime(2025, 6, 9, tzinfo=UTC), WORLD.end)


def test_date_range_window_is_parsed_as_utc() -> None:
    window = resolve_window("2025-05-01..2025-06-01", WORLD, LATEST)
    assert window.after == datetime(2025, 5, 1, tzinfo=UTC)
    assert window.until == datetime(2025, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["yesterday", "2025-06-01..2025-05-01", "2025-13-01..2025-14-01"])
def test_bad_window_names_raise_a_clear_error(spec: str) -> None:
    with pytest.raises(InvalidInputError, match="window"):
        resolve_window(spec, WORLD, LATEST)


def test_random_halves_keep_each_users_rows_together() -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4, 4], "x": range(8)})
    first, second = split_by_user(frame, seed=3)
    assert len(first) == len(second) == 4
    assert set(first["user_id"]).isdisjoint(set(second["user_id"]))
    assert sorted([*first["x"], *second["x"]]) == list(range(8))


def test_small_samples_use_corrected_p_value_tests_and_large_ones_distances() -> None:
    config = MonitoringConfig(monitoring_small_sample=1000)
    assert drift.choose_method(drift.NUMERICAL, 5000, 999, config) == ("ks", 0.05)
    assert drift.choose_method(drift.CATEGORICAL, 999, 5000, config) == ("chisquare", 0.05)
    # Bonferroni: 0.05 over 10 tests
    assert drift.choose_method(drift.NUMERICAL, 5000, 999, config, tests=10) == ("ks", pytest.approx(0.005))
    assert drift.choose_method(drift.NUMERICAL, 1000, 1000, config) == ("wasserstein", 0.1)
    assert drift.choose_method(drift.CATEGORICAL, 1000, 1000, config) == ("jensenshannon", 0.1)


def test_p_values_drift_below_threshold_and_distances_at_or_above() -> None:
    assert drift.is_drifted("ks", 0.01, 0.05)
    assert not drift.is_drifted("ks", 0.2, 0.05)
    assert drift.is_drifted("wasserstein", 0.1, 0.1)
    assert not drift.is_drifted("psi", 0.09, 0.1)
    assert not drift.is_drifted("wasserstein", float("nan"), 0.1)


def test_short_vectors_split_into_named_components_and_long_ones_are_dropped() -> None:
    frame = pd.DataFrame(
        {
            "shares": [np.array([0.25, 0.75]), [1.0, 0.0]],
            "embedding": [np.zeros(40), np.ones(40)],
            "count": [3, 4],
        }
    )
    out = drift.expand_vectors(frame, {"shares": ("buy", "view")})
    assert list(out.columns) == ["shares[buy]", "shares[view]", "count"]
    assert out["shares[view]"].tolist() == [0.75, 0.0]
    assert out["count"].tolist() == [3, 4]


def test_booleans_and_strings_are_categorical() -> None:
    assert drift.column_kind(pd.Series([True, False])) == drift.CATEGORICAL
    assert drift.column_kind(pd.Series(["ios", "web"])) == drift.CATEGORICAL
    assert drift.column_kind(pd.Series([1.5, 2.0])) == drift.NUMERICAL
    assert drift.as_categorical(pd.Series([True, None])).tolist() == ["True", None]


def test_review_features_are_blanked_for_users_without_a_recent_review() -> None:
    snapshots = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "event_timestamp": [LATEST] * 3,
            "has_reviews": [True, True, False],
            "last_review_days": [3.0, 45.0, 100.0],
            "recent_sentiment": [-0.5, 0.8, 0.0],
            "events_30d": [4, 5, 6],
        }
    )
    out = feature_frame(snapshots, recent_reviewers_only=True)
    assert out["recent_sentiment"].tolist()[0] == -0.5
    assert out["recent_sentiment"].isna().tolist() == [False, True, True]
    assert out["events_30d"].tolist() == [4, 5, 6]
    assert out["has_reviews"].tolist() == ["True", "True", "False"]
    assert "user_id" not in out.columns
    kept = feature_frame(snapshots, recent_reviewers_only=False)
    assert kept["recent_sentiment"].tolist() == [-0.5, 0.8, 0.0]


def test_calendar_features_cover_vector_components() -> None:
    calendar = ("total_events", "categorical_event_vector")
    assert is_calendar_feature("categorical_event_vector[purchase]", calendar)
    assert is_calendar_feature("total_events", calendar)
    assert not is_calendar_feature("events_30d", calendar)


def test_out_of_vocabulary_share_counts_unseen_tokens() -> None:
    vocabulary = text.build_vocabulary(["The parcel arrived.", "I don't like it"])
    assert vocabulary == {"the", "parcel", "arrived", "i", "don't", "like", "it"}
    # "the" and "parcel" known, "courier" and "lost" not: 2 of 4
    assert text.oov_share("The courier lost parcel", vocabulary) == 0.5
    assert text.oov_share("!!!", vocabulary) == 0.0


def test_review_descriptors_measure_length_words_and_sentiment() -> None:
    vocabulary = frozenset({"great", "product"})
    out = text.review_descriptors(pd.Series(["Great product", "Terrible late delivery"]), vocabulary)
    assert out[text.TEXT_LENGTH].tolist() == [13.0, 22.0]
    assert out[text.WORD_COUNT].tolist() == [2.0, 3.0]
    assert out[text.OOV_SHARE].tolist() == [0.0, 1.0]
    assert out[text.SENTIMENT].iloc[0] > 0.5
    assert out[text.SENTIMENT].iloc[1] < -0.05


def test_sentiment_summary_gives_mean_and_negative_share() -> None:
    summary = text.sentiment_summary(pd.Series([0.5, -0.5, -0.05, 0.2]), negative_at=-0.05)
    assert summary == {"reviews": 4, "mean": pytest.approx(0.0375), "negative_share": 0.5}
    assert text.sentiment_summary(pd.Series([], dtype=float), -0.05)["mean"] is None


def test_embedding_matrix_leaves_out_users_without_reviews() -> None:
    matrix = text.embedding_matrix(pd.Series([np.zeros(3), np.array([1.0, 2.0, 3.0]), None]))
    assert matrix.shape == (1, 3)
    assert matrix.iloc[0].tolist() == [1.0, 2.0, 3.0]


def test_freshness_age_is_stale_past_the_ttl_only() -> None:
    now = datetime(2025, 7, 7, tzinfo=UTC)
    fresh = age_verdict(now - timedelta(hours=12), now, timedelta(days=1))
    assert fresh == {"newest_value": "2025-07-06T12:00:00+00:00", "age_hours": 12.0, "stale": False}
    assert age_verdict(now - timedelta(days=2), now, timedelta(days=1))["stale"] is True
    assert age_verdict(now - timedelta(days=400), now, timedelta(0))["stale"] is False
    assert age_verdict(None, now, timedelta(days=1))["stale"] is True


def test_config_takes_thresholds_from_settings() -> None:
    from churnfs.settings import Settings

    config = MonitoringConfig.from_settings(Settings(drift_share_threshold=0.5))
    assert config.drift_share_threshold == 0.5
    assert config.monitoring_numerical_method == "wasserstein"
