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
from monitoring.key_features import choose_key_features, key_feature_verdicts
from monitoring.windows import held_out_window, resolve_window, split_by_user

WORLD = WorldSpec(users=10, seed=1, drift=True)
LATEST = datetime(2025, 7, 7, tzinfo=UTC)


def test_training_window_runs_from_warmup_to_train_end() -> None:
    window = resolve_window("training", WORLD, LATEST, warmup_days=60)
    assert window.until == datetime(2025, 4, 2, tzinfo=UTC)  # day 86
    # as-of times in (after, until]: the first one included is start + 60 days, 2025-03-07
    assert window.after < datetime(2025, 3, 7, tzinfo=UTC) < window.after + timedelta(seconds=1)
    assert window.reviews_from == WORLD.start
    assert window.describe() == "training: snapshots as of 2025-03-07 to 2025-04-02"


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


def test_columns_use_ks_or_chi_square_at_a_bonferroni_level() -> None:
    config = MonitoringConfig()
    assert drift.choose_test(drift.NUMERICAL, config) == ("ks", 0.05)
    assert drift.choose_test(drift.CATEGORICAL, config) == ("chisquare", 0.05)
    # Bonferroni: 0.05 over 10 tests
    assert drift.choose_test(drift.NUMERICAL, config, tests=10) == ("ks", pytest.approx(0.005))


def test_a_column_drifts_only_when_significant_and_past_the_psi_floor() -> None:
    assert drift.is_drifted(p_value=0.001, alpha=0.01, psi_value=0.1, psi_floor=0.1)
    # significant but small: what 100,000 rows make of noise
    assert not drift.is_drifted(p_value=1e-12, alpha=0.01, psi_value=0.03, psi_floor=0.1)
    # large but not significant: what a few rows make of noise
    assert not drift.is_drifted(p_value=0.2, alpha=0.01, psi_value=0.5, psi_floor=0.1)
    assert not drift.is_drifted(p_value=float("nan"), alpha=0.01, psi_value=0.5, psi_floor=0.1)
    assert not drift.is_drifted(p_value=0.001, alpha=0.01, psi_value=None, psi_floor=0.1)


def test_psi_of_categories_matches_hand_computation() -> None:
    reference = pd.Series(["a", "a", "b", "b"])
    current = pd.Series(["a", "b", "b", "b", None])
    # shares (1/2, 1/2) -> (1/4, 3/4), the missing value dropped:
    # (1/4 - 1/2) ln(1/2) + (3/4 - 1/2) ln(3/2) = 0.173287 + 0.101366
    assert drift.psi(reference, current, drift.CATEGORICAL) == pytest.approx(0.274653, abs=1e-6)


def test_psi_bins_numbers_at_the_reference_deciles() -> None:
    reference = pd.Series(np.arange(10.0))
    current = pd.Series([0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    # Deciles of 0..9 are 0.9, 1.8, ..., 8.1: one value per bin, a share of 0.1 each.
    ref_shares, cur_shares = drift.bin_shares(reference, current, drift.NUMERICAL, bins=10)
    assert ref_shares.tolist() == pytest.approx([0.1] * 10)
    assert cur_shares.tolist() == pytest.approx([0.5, 0, 0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.1])
    # bin 0: (0.5 - 0.1) ln 5 = 0.643775; bins 1-4 empty, counted as 1e-4:
    # 4 (1e-4 - 0.1) ln(1e-4 / 0.1) = 4 x 0.690085 = 2.760339
    expected = 0.4 * np.log(5) + 4 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert drift.psi(reference, current, drift.NUMERICAL) == pytest.approx(expected)
    assert expected == pytest.approx(3.404114, abs=1e-6)
    assert drift.psi(reference, reference, drift.NUMERICAL) == 0.0


def test_psi_gives_a_count_feature_one_bin_per_frequent_value() -> None:
    reference = pd.Series([0] * 6 + [1] * 3 + [2])
    current = pd.Series([0] * 3 + [1] * 3 + [2] * 4)
    # deciles 0,0,0,0,0,0.4,1,1,1.1 -> cut points 0, 0.4, 1, 1.1: bins (..0], (0,0.4], (0.4,1], (1.1..)
    ref_shares, cur_shares = drift.bin_shares(reference, current, drift.NUMERICAL, bins=10)
    assert ref_shares.tolist() == pytest.approx([0.6, 0.0, 0.3, 0.0, 0.1])
    assert cur_shares.tolist() == pytest.approx([0.3, 0.0, 0.3, 0.0, 0.4])
    expected = (0.3 - 0.6) * np.log(0.3 / 0.6) + (0.4 - 0.1) * np.log(0.4 / 0.1)
    assert drift.psi(reference, current, drift.NUMERICAL) == pytest.approx(expected)


def test_ks_p_value_matches_hand_computation() -> None:
    # Every current value above every reference value: D = 1, and the exact two-sided p-value is
    # the share of the C(8, 4) = 70 orderings as extreme, 2 / 70.
    p = drift.p_value(
        pd.Series([0.0, 1.0, 2.0, 3.0]), pd.Series([10.0, 11.0, 12.0, 13.0]), drift.NUMERICAL, "ks"
    )
    assert p == pytest.approx(2 / 70)


def test_chi_square_p_value_matches_hand_computation() -> None:
    # expected current counts from the reference shares: (2, 2); observed (1, 3):
    # chi2 = 1/2 + 1/2 = 1 on 1 degree of freedom, p = 0.317311
    p = drift.p_value(
        pd.Series(["a", "a", "b", "b"]), pd.Series(["a", "b", "b", "b"]), drift.CATEGORICAL, "chisquare"
    )
    assert p == pytest.approx(0.317311, abs=1e-6)


def test_key_features_are_the_champions_most_important_non_calendar_features() -> None:
    importance = {"total_events": 0.9, "events_30d": 0.5, "device": 0.5, "age": 0.1, "income": 0.05}
    keys = choose_key_features((), importance, count=2, never=("total_events",))
    # total_events leads but is a calendar feature; the tie is broken by name
    assert keys.names == ("device", "events_30d")
    assert keys.source == "champion"
    assert list(keys.importance) == ["total_events", "device", "events_30d", "age", "income"]


def test_named_key_features_win_and_none_without_a_champion() -> None:
    named = choose_key_features(["age"], {"events_30d": 1.0}, count=3)
    assert (named.names, named.source) == (("age",), "settings")
    none = choose_key_features((), None, count=3)
    assert (none.names, none.source) == ((), "none")
    assert "counts equally" in none.rule


def test_a_vector_key_feature_drifts_when_any_component_does() -> None:
    verdicts = {"topic_vector[0]": False, "topic_vector[1]": True, "age": False}
    assert key_feature_verdicts(["topic_vector", "age", "income"], verdicts) == {
        "topic_vector": True,
        "age": False,
        "income": None,
    }


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


def test_review_descriptors_take_the_features_sentiment_when_given() -> None:
    texts = pd.Series(["Great product", "It stopped working after a week"], index=[7, 9])
    scores = pd.Series([0.4, -0.6], index=[7, 9])
    out = text.review_descriptors(texts, frozenset(), scores)
    assert out[text.SENTIMENT].tolist() == [0.4, -0.6]


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
    assert config.monitoring_numerical_test == "ks"
    assert config.monitoring_key_features == ()
    assert config.monitoring_psi_floor == 0.1


def test_the_outputs_reference_is_the_snapshot_at_the_test_cutoff() -> None:
    window = held_out_window(WORLD, LATEST)
    assert window is not None
    test = datetime(2025, 5, 26, tzinfo=UTC)  # the default calendar's last cutoff (day 140)
    assert window.until == test and window.after == test - timedelta(microseconds=1)
    assert held_out_window(WORLD, test) is None  # nothing after it to compare with
