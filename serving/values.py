"""Feature values as JSON carries them: plain Python scalars and lists, no NaN, and a tolerant
equality used to report what a refresh changed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

FLOAT_TOLERANCE = 1e-6
"""Two feature values closer than this (absolute, or relative for large values) count as equal:
the online store keeps float32 vectors, so a round trip moves them by about 1e-7."""


def to_plain(value: Any) -> Any:
    """Turn numpy / pandas scalars and arrays into JSON-ready Python values; NaN and inf become
    None (JSON has no NaN, and a missing value is what they mean here)."""
    if value is None:
        return None
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return to_plain(float(value))
    if isinstance(value, np.ndarray | list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # other numpy-like scalars
        return to_plain(value.item())
    return value


def plain_features(values: Mapping[str, Any]) -> dict[str, Any]:
    """``to_plain`` over a feature mapping."""
    return {name: to_plain(v) for name, v in values.items()}


def values_equal(a: Any, b: Any, tolerance: float = FLOAT_TOLERANCE) -> bool:
    """Equality for feature values: floats within ``tolerance``, lists element-wise, None only
    equal to None."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        if not (isinstance(a, list | tuple) and isinstance(b, list | tuple)) or len(a) != len(b):
            return False
        return all(values_equal(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)
    return bool(a == b)


def changed_features(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The features of ``after`` whose value differs from ``before``, as (name, before, after),
    in ``after``'s order."""
    return [
        (name, before.get(name), value)
        for name, value in after.items()
        if not values_equal(before.get(name), value)
    ]
