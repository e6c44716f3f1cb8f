"""The weekly sentiment trend on hand-made reviews: weeks, means, negative shares, the reference
band and the weeks that leave it, and the HTML section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.trend import MIN_WEEK_REVIEWS, trend_section, weekly_sentiment, with_trend

MONDAY = datetime(2025, 1, 6, tzinfo=UTC)


def week_of_reviews(week: int, scores: list[float]) -> pd.DataFrame:
    """``scores`` as reviews spread over the week ``week`` weeks after MONDAY."""
    start = MONDAY + timedelta(weeks=week)
    times = [start + timedelta(hours=1 + 6 * i) for i in range(len(scores))]
    return pd.DataFrame({"review_timestamp": pd.to_datetime(times, utc=True), "sentiment": scores})


def reviews() -> pd.DataFrame:
    """Four reference weeks around a mean of 0.5, then a current week that slid to -0.1."""
    n = MIN_WEEK_REVIEWS
    weeks = [
        week_of_reviews(0, [0.4] * n),
        week_of_reviews(1, [0.6] * n),
        week_of_reviews(2, [0.5] * (n - 2) + [-0.5, -0.5]),
        week_of_reviews(3, [0.5] * n),
        week_of_reviews(4, [-0.1] * (n // 2) + [-0.01] * (n - n // 2)),
        week_of_reviews(5, [0.9] * 3),  # too few reviews: shown, never flagged
    ]
    return pd.concat(weeks, ignore_index=True)


def test_weekly_sentiment_gives_mean_negative_share_and_the_reference_band() -> None:
    trend = weekly_sentiment(
        reviews(),
        negative_at=-0.05,
        reference=(MONDAY, MONDAY + timedelta(weeks=4)),
        current=(MONDAY + timedelta(weeks=4), MONDAY + timedelta(weeks=6)),
    )
    weeks = trend["weeks"]
    assert [w["week_start"][:10] for w in weeks] == [
        "2025-01-06",
        "2025-01-13",
        "2025-01-20",
        "2025-01-27",
        "2025-02-03",
        "2025-02-10",
    ]
    n = MIN_WEEK_REVIEWS
    assert [w["reviews"] for w in weeks] == [n, n, n, n, n, 3]
    third_mean = (0.5 * (n - 2) - 1.0) / n
    expected_means = [0.4, 0.6, third_mean, 0.5, (-0.1 * (n // 2) - 0.01 * (n - n // 2)) / n, 0.9]
    np.testing.assert_allclose([w["mean"] for w in weeks], expected_means)
    assert [w["negative_share"] for w in weeks] == pytest.approx([0, 0, 2 / n, 0, (n // 2) / n, 0])
    assert [w["reference"] for w in weeks] == [True, True, True, True, False, False]
    assert [w["current"] for w in weeks] == [False, False, False, False, True, True]

    reference_means = np.asarray([0.4, 0.6, third_mean, 0.5])
    centre, sd = reference_means.mean(), reference_means.std(ddof=1)
    band = trend["band"]
    assert band["weeks"] == 4
    assert band["mean"]["low"] == pytest.approx(centre - 2 * sd)
    assert band["mean"]["high"] == pytest.approx(centre + 2 * sd)
    assert [w["outside_band"] for w in weeks] == [[], [], [], [], ["mean", "negative_share"], []]
    assert trend["current_weeks_outside_band"] == 1


def test_trend_section_draws_both_series_after_the_headline() -> None:
    trend = weekly_sentiment(
        reviews(),
        negative_at=-0.05,
        reference=(MONDAY, MONDAY + timedelta(weeks=4)),
        current=(MONDAY + timedelta(weeks=4), MONDAY + timedelta(weeks=6)),
    )
    section = trend_section(trend)
    assert section.count("<svg") == 2 and section.count("<circle") == 12
    assert 'fill="#c62828"' in section  # the slid week is drawn outside the band
    page = '<html><body><section id="churnfs-headline">h</section><div>evidently</div></body></html>'
    out = with_trend(page, section)
    assert out.index("churnfs-headline") < out.index("weekly-sentiment") < out.index("evidently")
