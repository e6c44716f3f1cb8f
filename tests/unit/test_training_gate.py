"""The champion gate (training/gate.py) on hand-made test metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from training.gate import (
    GATE_TOLERANCE,
    IncumbentScore,
    decide_alias,
    labels_seen_until,
    model_input,
)


def _champion(roc_auc: float) -> IncumbentScore:
    return IncumbentScore("4", metrics={"roc_auc": roc_auc, "pr_auc": 0.5})


def test_the_first_model_takes_the_champion_alias() -> None:
    decision = decide_alias({"roc_auc": 0.61}, None)
    assert decision.alias == "champion" and decision.champion_version is None
    assert decision.reason == "no champion yet; test ROC-AUC 0.6100"


def test_a_model_within_the_tolerance_of_the_champion_takes_the_alias() -> None:
    decision = decide_alias({"roc_auc": 0.8000}, _champion(0.8000 + GATE_TOLERANCE))
    assert decision.takes_champion
    assert (
        decision.reason
        == "not worse than the champion: test ROC-AUC 0.8000 vs champion v4's 0.8050 on the same rows"
    )
    assert decision.champion_version == "4" and decision.champion_metrics["roc_auc"] == 0.805


def test_a_model_worse_than_the_tolerance_becomes_the_challenger() -> None:
    decision = decide_alias({"roc_auc": 0.7940}, _champion(0.8000))
    assert decision.alias == "challenger"
    assert decision.reason.startswith("worse than the champion by more than 0.005: test ROC-AUC 0.7940")
    assert decision.reason.endswith("`churnfs train --promote` makes it the champion anyway")


def test_promote_forces_the_champion_alias_and_keeps_the_comparison_in_the_reason() -> None:
    decision = decide_alias({"roc_auc": 0.70}, _champion(0.80), promote=True)
    assert decision.alias == "champion"
    assert (
        decision.reason
        == "promoted with --promote (test ROC-AUC 0.7000 vs champion v4's 0.8000 on the same rows)"
    )


def test_a_champion_that_cannot_be_compared_is_not_replaced_without_promote() -> None:
    incomparable = IncumbentScore("2", not_comparable="it reads features the test rows lack (old_feature)")
    decision = decide_alias({"roc_auc": 0.9}, incomparable)
    assert decision.alias == "challenger" and decision.champion_metrics == {}
    assert "champion v2 not comparable: it reads features the test rows lack (old_feature)" in decision.reason
    assert decide_alias({"roc_auc": 0.9}, incomparable, promote=True).alias == "champion"


def test_labels_seen_until_is_the_last_fitted_or_validation_label_window_end() -> None:
    params = {
        "train_cutoffs": "2025-02-03,2025-02-17",
        "validation_cutoffs": "2025-04-14",
        "label_horizon_days": "30",
    }
    assert labels_seen_until(params) == datetime(2025, 5, 14, tzinfo=UTC)
    assert labels_seen_until({"train_cutoffs": "2025-02-03"}) is None  # no horizon recorded
    assert labels_seen_until({}) is None


def test_model_input_keeps_the_models_columns_with_vectors_as_lists() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "events_30d": [3, 0],
            "topic_vector": [np.array([0.25, 0.75]), None],
        }
    )
    out = model_input(frame, ["topic_vector", "events_30d"])
    assert list(out.columns) == ["topic_vector", "events_30d"]
    assert out["topic_vector"].tolist() == [[0.25, 0.75], None]
    assert out["events_30d"].tolist() == [3, 0]


@pytest.mark.parametrize("new", [0.7951, 0.80, 0.95])
def test_the_boundary_is_inclusive_at_the_tolerance(new: float) -> None:
    assert decide_alias({"roc_auc": new}, _champion(0.80)).takes_champion
