"""The registered model's runtime (training/churn_model_pyfunc.py) on hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.churn_model_pyfunc import FeatureSpec, InputFeature, design_matrix, sum_by_feature

SPEC = FeatureSpec(
    model_kind="lightgbm",
    feature_service="churn_model_v1",
    inputs=(
        InputFeature("age", "int"),
        InputFeature("premium", "bool"),
        InputFeature("device", "string", levels=("android", "ios", "web")),
        InputFeature("shares", "vector", labels=("page_view", "purchase")),
        InputFeature("income", "float"),
    ),
)


def test_design_columns_expand_vectors_and_one_hot_levels() -> None:
    assert SPEC.columns == [
        "age",
        "premium",
        "device__android",
        "device__ios",
        "device__web",
        "shares__page_view",
        "shares__purchase",
        "income",
    ]
    assert SPEC.column_owners().tolist() == [0, 1, 2, 2, 2, 3, 3, 4]


def test_design_matrix_of_online_style_frame_with_lists() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [7, 8],
            "age": [30, 41],
            "premium": [True, False],
            "device": ["ios", "web"],
            "shares": [[0.25, 0.75], [1.0, 0.0]],
            "income": [1000.5, 2000.0],
            "unknown_column": ["x", "y"],
        }
    )
    expected = np.array(
        [
            [30.0, 1.0, 0.0, 1.0, 0.0, 0.25, 0.75, 1000.5],
            [41.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 2000.0],
        ]
    )
    np.testing.assert_array_equal(design_matrix(frame, SPEC), expected)


def test_missing_values_become_nan_and_unseen_levels_all_zeros() -> None:
    frame = pd.DataFrame(
        {
            "age": [np.nan],
            "premium": [None],
            "device": ["blackberry"],
            "shares": [None],
            "income": [None],
        }
    )
    row = design_matrix(frame, SPEC)[0]
    assert np.isnan(row[[0, 1, 5, 6, 7]]).all()
    assert row[2:5].tolist() == [0.0, 0.0, 0.0]


def test_numpy_float32_vectors_read_like_lists() -> None:
    as_lists = pd.DataFrame(
        {"age": [1], "premium": [False], "device": ["web"], "shares": [[0.5, 0.5]], "income": [2.0]}
    )
    as_arrays = as_lists.assign(shares=[np.array([0.5, 0.5], dtype=np.float32)])
    np.testing.assert_array_equal(design_matrix(as_lists, SPEC), design_matrix(as_arrays, SPEC))


def test_vector_of_the_wrong_length_is_rejected() -> None:
    frame = pd.DataFrame(
        {"age": [1], "premium": [True], "device": ["web"], "shares": [[0.1]], "income": [1.0]}
    )
    with pytest.raises(ValueError, match=r"shares.*1 components.*expects 2"):
        design_matrix(frame, SPEC)


def test_frame_without_a_model_feature_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\['income'\]"):
        design_matrix(
            pd.DataFrame({"age": [1], "premium": [True], "device": ["web"], "shares": [[1, 0]]}), SPEC
        )


def test_contributions_add_up_per_input_feature() -> None:
    per_column = np.array([[1.0, 2.0, 0.1, 0.2, 0.3, -1.0, -2.0, 5.0]])
    assert sum_by_feature(per_column, SPEC)[0].tolist() == pytest.approx([1.0, 2.0, 0.6, -3.0, 5.0])


def test_spec_round_trips_through_json() -> None:
    spec = FeatureSpec(
        model_kind=SPEC.model_kind,
        feature_service=SPEC.feature_service,
        inputs=SPEC.inputs,
        metadata={"train_cutoffs": ["2025-02-03T00:00:00+00:00"]},
    )
    assert FeatureSpec.from_json(spec.to_json()) == spec
