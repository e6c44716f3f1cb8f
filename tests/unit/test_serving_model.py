"""Risk bands, top contributions and reading the model's output frame."""

from __future__ import annotations

import pandas as pd
import pytest

from serving.model import feature_service_version, risk_band, scores_from_output, top_features


@pytest.mark.parametrize(
    ("probability", "band"),
    [(0.0, "low"), (0.1999, "low"), (0.2, "medium"), (0.4999, "medium"), (0.5, "high"), (1.0, "high")],
)
def test_risk_band_edges(probability: float, band: str) -> None:
    assert risk_band(probability) == band


def test_top_features_ranks_by_absolute_contribution_and_says_the_direction() -> None:
    contributions = {"events_30d": -0.4, "last_active_days": 0.9, "premium": 0.1, "topic_vector": 0.5}
    values = {"events_30d": 3, "last_active_days": 12.5, "premium": False, "topic_vector": [0.2, 0.8]}
    top = top_features(contributions, values, k=3)
    assert top == [
        {"feature": "last_active_days", "value": 12.5, "contribution": 0.9, "direction": "raises_risk"},
        {"feature": "topic_vector", "value": None, "contribution": 0.5, "direction": "raises_risk"},
        {"feature": "events_30d", "value": 3, "contribution": -0.4, "direction": "lowers_risk"},
    ]


def test_top_features_breaks_ties_by_name_and_skips_non_finite_contributions() -> None:
    top = top_features({"b": 0.3, "a": -0.3, "c": float("nan")}, {"a": 1, "b": 2, "c": 3}, k=5)
    assert [t["feature"] for t in top] == ["a", "b"]


def test_scores_from_output_reads_probabilities_and_contributions_per_row() -> None:
    out = pd.DataFrame(
        {
            "churn_probability": [0.25, 0.75],
            "contrib__age": [0.1, -0.2],
            "contrib__events_30d": [-0.5, 1.5],
        }
    )
    scores = scores_from_output(out)
    assert [s.churn_probability for s in scores] == [0.25, 0.75]
    assert scores[0].contributions == {"age": 0.1, "events_30d": -0.5}
    assert scores[1].contributions == {"age": -0.2, "events_30d": 1.5}


def test_scores_from_output_accepts_a_plain_probability_array() -> None:
    scores = scores_from_output(pd.Series([0.125]).to_numpy())
    assert scores[0].churn_probability == 0.125 and scores[0].contributions == {}


def test_feature_service_version_comes_from_the_name() -> None:
    assert feature_service_version("churn_model_v1") == "v1"
    assert feature_service_version("churn_model_v12") == "v12"
    assert feature_service_version("churn_model") is None
