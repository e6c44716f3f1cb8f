"""Validation metrics (training/evaluation.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluation import classification_metrics, lift_at


def test_metrics_of_four_rows_match_hand_computation() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(labels, scores)
    # positive/negative pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: (0.35<0.4)
    assert m["roc_auc"] == pytest.approx(3 / 4)
    # ranking 0.8(+), 0.4(-), 0.35(+), 0.1(-): AP = (1/1 + 2/3) / 2
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    expected_log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_log_loss)


def test_lift_in_the_top_decile() -> None:
    # 20 rows, 4 churners (base rate 0.2); the top 2 scores hold 1 churner -> rate 0.5 -> lift 2.5
    labels = np.zeros(20, dtype=int)
    labels[[0, 5, 6, 7]] = 1
    scores = np.linspace(0.0, 1.0, 20)[::-1]  # row 0 scores highest, then row 1, ...
    assert lift_at(labels, scores, 0.1) == pytest.approx(0.5 / 0.2)


def test_lift_rounds_the_top_group_up_to_a_whole_row() -> None:
    labels = np.array([1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4])
    # ceil(0.1 * 5) = 1 row: the churner; rate 1.0 / base 0.2
    assert lift_at(labels, scores, 0.1) == pytest.approx(5.0)


def test_lift_without_churners_is_undefined() -> None:
    assert math.isnan(lift_at(np.zeros(10), np.arange(10.0)))
