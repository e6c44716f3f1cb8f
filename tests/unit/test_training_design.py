"""Fitting the model's feature layout on the training period (training/design.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnfs.errors import SchemaError
from training.churn_model_pyfunc import design_matrix
from training.design import ServiceFeature, binary_labels, fit_feature_spec

FEATURES = [
    ServiceFeature("user_profile_features", "country", "String"),
    ServiceFeature("user_activity_features", "categorical_event_vector", "Array(Float32)"),
    ServiceFeature("user_review_features", "topic_vector", "Array(Float32)"),
    ServiceFeature("user_review_features", "has_reviews", "Bool"),
    ServiceFeature("user_activity_features", "events_30d", "Int64"),
]


def _train_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "country": ["DE", "US", None, "DE"],
            "categorical_event_vector": [np.full(6, 1 / 6, dtype=np.float32)] * 4,
            "topic_vector": [np.array([0.2, 0.8, 0.0], dtype=np.float32)] * 3 + [None],
            "has_reviews": [True, False, True, True],
            "events_30d": [3, 0, 12, 1],
        }
    )


def test_levels_come_from_the_training_rows_only() -> None:
    spec = fit_feature_spec(_train_frame(), FEATURES, "xgboost", "churn_model_v1")
    country = spec.inputs[0]
    assert country.levels == ("DE", "US")
    # a level first seen in the validation period gets no column of its own
    later = _train_frame().assign(country=["FR", "US", "DE", "FR"])
    x = design_matrix(later, spec)
    assert x[:, :2].tolist() == [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]


def test_vectors_get_one_named_column_per_component() -> None:
    spec = fit_feature_spec(_train_frame(), FEATURES, "xgboost", "churn_model_v1")
    assert spec.inputs[1].columns() == [
        "categorical_event_vector__page_view",
        "categorical_event_vector__search",
        "categorical_event_vector__add_to_cart",
        "categorical_event_vector__purchase",
        "categorical_event_vector__wishlist",
        "categorical_event_vector__support_contact",
    ]
    assert spec.inputs[2].columns() == ["topic_vector__0", "topic_vector__1", "topic_vector__2"]
    assert len(spec.columns) == 2 + 6 + 3 + 1 + 1


def test_vectors_of_mixed_lengths_are_a_schema_error() -> None:
    frame = _train_frame()
    frame["topic_vector"] = [np.array([0.5, 0.5, 0.0]), np.array([1.0]), None, np.array([0.0, 0.0, 1.0])]
    with pytest.raises(SchemaError, match="topic_vector"):
        fit_feature_spec(frame, FEATURES, "xgboost", "churn_model_v1")


def test_unreadable_feast_type_is_a_schema_error() -> None:
    odd = [ServiceFeature("v", "blob", "Bytes")]
    with pytest.raises(SchemaError, match="v:blob has Feast type Bytes"):
        fit_feature_spec(pd.DataFrame({"blob": [b"x"]}), odd, "xgboost", "churn_model_v1")


def test_labels_must_be_binary_and_present() -> None:
    assert binary_labels(pd.Series([0, 1, 1])).tolist() == [0, 1, 1]
    with pytest.raises(SchemaError, match="0 or 1"):
        binary_labels(pd.Series([0, 2]))
    with pytest.raises(SchemaError, match="1 label rows are missing"):
        binary_labels(pd.Series([0, None]))
