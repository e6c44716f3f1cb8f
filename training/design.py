"""From a feature service and the training period's rows to the model's ``FeatureSpec``.

The spec fixes, once, how every model reads the features (``churn_model_pyfunc``): numbers and
booleans as they are, each string feature one-hot over the levels seen in the training period
(the same columns for all four models, an unseen level maps to all zeros), each vector one column
per component. Only training-period rows are looked at, so nothing about the validation period
leaks into the encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnfs.errors import SchemaError
from churnfs.world import EVENT_TYPES
from training.churn_model_pyfunc import FeatureSpec, InputFeature

# Feast's type names -> how the model reads them (churn_model_pyfunc.INPUT_KINDS)
FEAST_KINDS = {
    "Int32": "int",
    "Int64": "int",
    "Float32": "float",
    "Float64": "float",
    "Bool": "bool",
    "String": "string",
    "Array(Float32)": "vector",
    "Array(Float64)": "vector",
}

# Readable names for vector components whose order docs/data-model.md fixes; other vectors
# (topic_vector, K components) are numbered.
VECTOR_COMPONENT_LABELS: dict[str, tuple[str, ...]] = {
    "categorical_event_vector": EVENT_TYPES,
}


@dataclass(frozen=True)
class ServiceFeature:
    """A feature of the feature service: its view, name and Feast type name."""

    view: str
    name: str
    feast_type: str

    @property
    def kind(self) -> str:
        try:
            return FEAST_KINDS[self.feast_type]
        except KeyError:
            raise SchemaError(
                f"feature {self.view}:{self.name} has Feast type {self.feast_type}, which the churn model "
                f"cannot read (supported: {', '.join(FEAST_KINDS)})"
            ) from None


def service_features(feature_service: Any) -> list[ServiceFeature]:
    """The features of a Feast ``FeatureService``, in its order."""
    return [
        ServiceFeature(view=projection.name, name=field.name, feast_type=str(field.dtype))
        for projection in feature_service.feature_view_projections
        for field in projection.features
    ]


def _vector_length(name: str, values: pd.Series) -> int:
    lengths = {len(v) for v in values.dropna().to_numpy() if v is not None}
    if len(lengths) != 1:
        raise SchemaError(
            f"vector feature {name!r} has component counts {sorted(lengths)} in the training period; "
            "expected one fixed length: rebuild the offline store (`make features`)"
        )
    return lengths.pop()


def fit_feature_spec(
    train: pd.DataFrame,
    features: Sequence[ServiceFeature],
    model_kind: str,
    feature_service: str,
    metadata: Mapping[str, Any] | None = None,
) -> FeatureSpec:
    """The spec of a model trained on ``train`` (training-period rows only)."""
    inputs = []
    for feature in features:
        if feature.name not in train.columns:
            raise SchemaError(f"the training frame lacks feature {feature.name!r} of {feature_service}")
        kind = feature.kind
        if kind == "string":
            levels = sorted({str(v) for v in train[feature.name].dropna().unique()})
            inputs.append(InputFeature(feature.name, kind, levels=tuple(levels)))
        elif kind == "vector":
            length = _vector_length(feature.name, train[feature.name])
            labels = VECTOR_COMPONENT_LABELS.get(feature.name, ())
            if len(labels) != length:
                labels = tuple(str(i) for i in range(length))
            inputs.append(InputFeature(feature.name, kind, labels=labels))
        else:
            inputs.append(InputFeature(feature.name, kind))
    return FeatureSpec(
        model_kind=model_kind,
        feature_service=feature_service,
        inputs=tuple(inputs),
        metadata=dict(metadata or {}),
    )


def with_kind(spec: FeatureSpec, model_kind: str) -> FeatureSpec:
    """The same layout for another model kind (every model shares one encoding)."""
    return FeatureSpec(
        model_kind=model_kind,
        feature_service=spec.feature_service,
        inputs=spec.inputs,
        metadata=dict(spec.metadata),
    )


def binary_labels(values: pd.Series) -> np.ndarray:
    """Labels as a 0/1 int array; a missing or non-binary label is a schema error."""
    if values.isna().any():
        raise SchemaError(f"{int(values.isna().sum())} label rows are missing: rebuild the raw world")
    arr = values.to_numpy(dtype=np.int64)
    if not np.isin(arr, (0, 1)).all():
        raise SchemaError("labels must be 0 or 1")
    return arr
