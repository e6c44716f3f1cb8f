"""The drift report on hand-made windows: Evidently's statistics match hand computation, a
planted shift is flagged and named, the same distribution is not, and bad inputs give one
clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from churnfs.errors import MissingDataError, SchemaError
from monitoring import drift
from monitoring.config import MonitoringConfig
from monitoring.job import DRIFT_EXIT_CODE, WindowData, compare_windows
from monitoring.table import render_summary_table

AS_OF = datetime(2025, 7, 7, tzinfo=UTC)
HAPPY = ["Great product and quick delivery, I love it", "Excellent quality, very happy with the price"]
UNHAPPY = ["The delivery was late and the box was damaged, terrible", "Awful courier, parcel lost, angry"]


def test_evidently_scores_match_hand_computed_distances() -> None:
    reference = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": ["a", "a", "b", "b"]})
    current = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "b", "b"]})
    config = MonitoringConfig(monitoring_small_sample=2)
    _, results = drift.run_drift_report(
        drift.DriftInputs(reference, current, ["x"], ["c"]), config, dataset_columns=["x", "c"]
    )
    by = {r.column: r for r in results}
    # Wasserstein distance 1 (every value moved by 1) over the reference's std sqrt(1.25)
    assert by["x"].method == "wasserstein"
    assert by["x"].score == pytest.approx(1 / np.sqrt(1.25))
    assert by["x"].drifted
    # Jensen-Shannon distance of (1/2, 1/2) and (1/4, 3/4), natural log:
    # m = (3/8, 5/8); JSD = (KL(p||m) + KL(q||m)) / 2 = 0.0338228; distance = sqrt(JSD)
    assert by["c"].method == "jensenshannon"
    assert by["c"].score == pytest.approx(0.183910, abs=1e-5)
    assert by["c"].drifted
    assert (by["x"].reference_mean, by["x"].current_mean) == (1.5, 2.5)


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

    console = Console(record=True, width=140)
    console.print(render_summary_table(summary))
    printed = console.export_text()
    assert "mobile_share_30d *" in printed
    assert "ALERT: key feature mobile_share_30d drifted" in printed


def test_same_distribution_is_not_flagged() -> None:
    rng = np.random.default_rng(12)
    reference = _window(rng, 2000, (0.6, 0.8), HAPPY + UNHAPPY)
    current = _window(rng, 2000, (0.6, 0.8), HAPPY + UNHAPPY)
    summary, _ = compare_windows(reference, current, CONFIG)
    assert summary["exit_code"] == 0
    assert summary["alerts"] == []
    assert summary["features"]["drifted"] == []
    # 2,000 rows a side: KS and chi-square, Bonferroni over the report's 7 columns
    columns = summary["features"]["columns"]
    assert {c["method"] for c in columns} == {"ks", "chisquare"}
    assert all(c["threshold"] == pytest.approx(0.05 / 7) for c in columns)
    assert all(c["score"] > c["threshold"] for c in columns)


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
