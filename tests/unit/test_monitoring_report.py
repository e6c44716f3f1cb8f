"""The drift report on hand-made windows: the tests and PSI match hand computation, noise in
100,000 rows is not drift, a planted shift is flagged and named first, the same distribution is
not, key features come from the champion's importance, and bad inputs give one clear error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from churnfs.errors import MissingDataError, SchemaError
from churnfs.settings import Settings
from monitoring import drift
from monitoring.config import MonitoringConfig
from monitoring.headline import HEADLINE_ID, with_headline
from monitoring.job import DRIFT_EXIT_CODE, WindowData, compare_windows
from monitoring.table import render_summary_table

AS_OF = datetime(2025, 7, 7, tzinfo=UTC)
HAPPY = ["Great product and quick delivery, I love it", "Excellent quality, very happy with the price"]
UNHAPPY = ["The delivery was late and the box was damaged, terrible", "Awful courier, parcel lost, angry"]


def test_verdicts_use_ks_or_chi_square_and_psi_computed_by_hand() -> None:
    reference = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": ["a", "a", "b", "b"]})
    current = pd.DataFrame({"x": [10.0, 11.0, 12.0, 13.0], "c": ["a", "b", "b", "b"]})
    results = drift.compare_columns(drift.DriftInputs(reference, current, ["x"], ["c"]), MonitoringConfig())
    by = {r.column: r for r in results}
    # KS: D = 1, exact p = 2 / C(8, 4); Bonferroni over 2 columns: alpha 0.025, so not significant
    assert (by["x"].test, by["x"].alpha) == ("ks", 0.025)
    assert by["x"].p_value == pytest.approx(2 / 70)
    # reference quartiles hold one value each; every current value lands in the top bin:
    # 3 (1e-4 - 1/4) ln(1e-4 / (1/4)) + (1 - 1/4) ln(1 / (1/4))
    assert by["x"].psi == pytest.approx(3 * (1e-4 - 0.25) * np.log(1e-4 / 0.25) + 0.75 * np.log(4))
    assert by["x"].psi > 0.1 and not by["x"].drifted  # four rows a side prove nothing
    # chi-square 1 on 1 degree of freedom; PSI (1/4 - 1/2) ln(1/2) + (3/4 - 1/2) ln(3/2)
    assert by["c"].p_value == pytest.approx(0.317311, abs=1e-6)
    assert by["c"].psi == pytest.approx(0.274653, abs=1e-6)
    assert (by["x"].reference_mean, by["x"].current_mean) == (1.5, 11.5)


def test_a_tiny_shift_in_a_hundred_thousand_rows_is_significant_but_not_drift() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, 100_000)})
    current = pd.DataFrame({"x": rng.normal(0.05, 1.0, 100_000)})  # a twentieth of a standard deviation
    (result,) = drift.compare_columns(drift.DriftInputs(reference, current, ["x"], []), MonitoringConfig())
    assert result.significant
    assert result.psi is not None and result.psi < 0.01
    assert not result.drifted
    moved = pd.DataFrame({"x": rng.normal(0.5, 1.0, 100_000)})  # half a standard deviation
    (result,) = drift.compare_columns(drift.DriftInputs(reference, moved, ["x"], []), MonitoringConfig())
    assert result.drifted and result.psi is not None and result.psi > 0.2


def _window(
    rng: np.random.Generator, users: int, mobile: tuple[float, float], texts: list[str]
) -> WindowData:
    snapshots = pd.DataFrame(
        {
            "user_id": np.arange(users),
            "event_timestamp": [AS_OF] * users,
            "mobile_share_30d": rng.uniform(*mobile, users),
            "events_30d": rng.poisson(8, users),
            "device": rng.choice(["ios", "android", "web"], users, p=[0.4, 0.32, 0.28]),
        }
    )
    reviews = pd.DataFrame(
        {
            "review_id": np.arange(400),
            "review_timestamp": [AS_OF] * 400,
            "review_text": rng.choice(texts, 400),
        }
    )
    return WindowData("hand-made", snapshots, reviews)


CONFIG = MonitoringConfig(monitoring_key_features=("mobile_share_30d", "review_sentiment"))


def test_planted_shift_is_flagged_and_named() -> None:
    rng = np.random.default_rng(11)
    reference = _window(rng, 2000, (0.6, 0.8), HAPPY)
    current = _window(rng, 2000, (0.8, 1.0), UNHAPPY)
    summary, _ = compare_windows(reference, current, CONFIG)
    assert summary["exit_code"] == DRIFT_EXIT_CODE
    assert summary["features"]["drifted"] == ["mobile_share_30d"]
    assert summary["features"]["drift_share"] == pytest.approx(1 / 3)
    sentiment = {d["column"]: d for d in summary["reviews"]["descriptors"]}["review_sentiment"]
    assert sentiment["drifted"]
    assert summary["reviews"]["reference_sentiment"]["negative_share"] == 0.0
    assert summary["reviews"]["current_sentiment"]["negative_share"] == 1.0
    assert any("mobile_share_30d" in a for a in summary["alerts"])
    assert any("review_sentiment" in a for a in summary["alerts"])
    assert summary["key_features"]["source"] == "settings"

    console = Console(record=True, width=200)
    console.print(render_summary_table(summary))
    printed = console.export_text()
    assert printed.startswith("DRIFT (exit 3): ")
    assert summary["headline"][1].startswith(
        "Features that moved (1 of 3 judged): mobile_share_30d (mean 0.698 -> 0.9, PSI"
    )
    assert printed.index("Features that moved (1 of 3 judged)") < printed.index("share drifted")
    assert "mobile_share_30d *" in printed
    assert "ALERT: key feature mobile_share_30d drifted" in printed


def test_the_html_page_opens_with_the_verdict_and_the_features_that_moved() -> None:
    lines = ["DRIFT (exit 3): key feature a<b drifted", "Features that moved (1 of 3 judged): a<b"]
    page = with_headline("<html><head></head><body><div id=root></div></body></html>", lines)
    body = page.split("<body>", 1)[1]
    assert body.startswith(f'<section id="{HEADLINE_ID}"')
    assert body.index("DRIFT (exit 3): key feature a&lt;b drifted") < body.index("Features that moved")
    assert body.index("Features that moved") < body.index("<div id=root>")


def test_key_features_come_from_the_champions_importance() -> None:
    rng = np.random.default_rng(15)
    reference = _window(rng, 2000, (0.6, 0.8), HAPPY)
    current = _window(rng, 2000, (0.8, 1.0), HAPPY)
    # the share alone would alert on one drifted feature of three: raise it so only keys decide
    config = MonitoringConfig(drift_share_threshold=0.5, monitoring_key_feature_count=1)
    importance = {"events_30d": 0.8, "mobile_share_30d": 0.3, "device": 0.1}
    summary, _ = compare_windows(reference, current, config, importance)
    assert summary["key_features"]["names"] == ["events_30d"]
    assert summary["features"]["drifted"] == ["mobile_share_30d"]
    assert summary["exit_code"] == 0, summary["alerts"]

    config = MonitoringConfig(drift_share_threshold=0.5, monitoring_key_feature_count=2)
    summary, _ = compare_windows(reference, current, config, importance)
    assert summary["key_features"]["names"] == ["events_30d", "mobile_share_30d"]
    assert summary["key_features"]["drifted"] == ["mobile_share_30d"]
    assert summary["exit_code"] == DRIFT_EXIT_CODE
    assert summary["headline"][2].startswith("Key features (the champion's 2 most important")


def test_without_a_champion_every_feature_counts_equally() -> None:
    rng = np.random.default_rng(16)
    reference = _window(rng, 2000, (0.6, 0.8), HAPPY)
    current = _window(rng, 2000, (0.8, 1.0), HAPPY)
    summary, _ = compare_windows(reference, current, MonitoringConfig(drift_share_threshold=0.5))
    assert summary["key_features"]["names"] == []
    assert summary["exit_code"] == 0
    assert any("every monitored feature counts equally" in n for n in summary["notes"])


def test_same_distribution_is_not_flagged() -> None:
    rng = np.random.default_rng(12)
    reference = _window(rng, 2000, (0.6, 0.8), HAPPY + UNHAPPY)
    current = _window(rng, 2000, (0.6, 0.8), HAPPY + UNHAPPY)
    summary, _ = compare_windows(reference, current, CONFIG)
    assert summary["exit_code"] == 0
    assert summary["alerts"] == []
    assert summary["features"]["drifted"] == []
    # KS and chi-square, Bonferroni over the report's 7 columns; PSI of same-distribution samples
    # of 2,000 rows stays far below the floor
    columns = summary["features"]["columns"]
    assert {c["test"] for c in columns} == {"ks", "chisquare"}
    assert all(c["alpha"] == pytest.approx(0.05 / 7) for c in columns)
    assert all(c["p_value"] > c["alpha"] for c in columns)
    assert all(c["psi"] < 0.02 for c in columns)
    assert summary["headline"][:2] == ["No alert (exit 0).", "No feature moved (0 of 3 judged)."]


def test_empty_current_window_is_a_clear_error() -> None:
    rng = np.random.default_rng(13)
    reference = _window(rng, 50, (0.6, 0.8), HAPPY)
    current = _window(rng, 50, (0.6, 0.8), HAPPY)
    current.snapshots = current.snapshots.iloc[0:0]
    with pytest.raises(MissingDataError, match=r"current window .* holds no snapshot rows"):
        compare_windows(reference, current, CONFIG)


def test_reference_without_a_column_is_a_clear_error() -> None:
    rng = np.random.default_rng(14)
    reference = _window(rng, 50, (0.6, 0.8), HAPPY)
    current = _window(rng, 50, (0.6, 0.8), HAPPY)
    reference.snapshots = reference.snapshots.drop(columns=["mobile_share_30d"])
    with pytest.raises(SchemaError, match="reference window lacks column\\(s\\) mobile_share_30d"):
        compare_windows(reference, current, CONFIG)


def test_terminal_table_shows_the_weekly_sentiment_band_and_the_weeks_outside_it() -> None:
    from datetime import timedelta

    from monitoring.trend import MIN_WEEK_REVIEWS, weekly_sentiment

    rng = np.random.default_rng(11)
    summary, _ = compare_windows(
        _window(rng, 200, (0.6, 0.8), HAPPY), _window(rng, 200, (0.6, 0.8), HAPPY), CONFIG
    )
    monday = datetime(2025, 1, 6, tzinfo=UTC)
    scores = [0.5, 0.6, 0.4, 0.5, -0.3]  # four reference weeks, then one current week that slid
    times = [monday + timedelta(weeks=w, hours=h) for w in range(5) for h in range(MIN_WEEK_REVIEWS)]
    reviews = pd.DataFrame(
        {"review_timestamp": times, "sentiment": [s for s in scores for _ in range(MIN_WEEK_REVIEWS)]}
    )
    summary["reviews"]["weekly_sentiment"] = weekly_sentiment(
        reviews,
        -0.05,
        reference=(monday, monday + timedelta(weeks=4)),
        current=(monday + timedelta(weeks=4), monday + timedelta(weeks=5)),
    )
    console = Console(record=True, width=200)
    console.print(render_summary_table(summary))
    row = next(line for line in console.export_text().splitlines() if "weekly mean sentiment" in line)
    assert "reference band" in row and "lowest -0.300" in row and "1 current week(s) outside" in row


def test_topic_columns_carry_the_topic_models_labels_into_the_headline_and_table(tmp_path: Path) -> None:
    from monitoring.headline import headline_lines
    from monitoring.job import label_topic_columns
    from transformations.topics import save_topic_labels, save_topic_model

    rng = np.random.default_rng(11)
    summary, _ = compare_windows(
        _window(rng, 2000, (0.6, 0.8), HAPPY), _window(rng, 2000, (0.8, 1.0), UNHAPPY), CONFIG
    )
    settings = Settings(data_dir=tmp_path)
    assert not label_topic_columns(summary, settings)  # no topic model: nothing to name
    moved = next(c for c in summary["features"]["columns"] if c["column"] == "mobile_share_30d")
    summary["features"]["columns"].append(moved | {"column": "topic_vector[1]"})
    model = save_topic_model(
        settings, np.eye(2, dtype=np.float32), settings.embedding_model, "onnx", AS_OF, 2
    )
    save_topic_labels(settings, model, ["late courier", "soft fabric"], np.eye(2, dtype=np.float32))
    assert label_topic_columns(summary, settings)
    assert summary["reviews"]["topics"][1] == {
        "column": "topic_vector[1]",
        "label": "fabric, soft",
        "words": ["fabric", "soft"],
    }
    assert 'topic_vector[1] "fabric, soft" (mean' in headline_lines(summary)[1]
    console = Console(record=True, width=200)
    console.print(render_summary_table(summary))
    assert 'topic_vector[1] "fabric, soft"' in console.export_text()
