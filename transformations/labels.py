"""``churn_labels``: the label group, ``target_table`` in the offline store's shape."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from transformations.profile import UTC_US, as_arrow


def build_churn_labels(targets: pa.Table | pd.DataFrame) -> pa.Table:
    """``user_id``, ``event_timestamp`` (the cutoff) and ``churned`` (int64) of clean
    ``target_table`` rows, ordered by user then cutoff."""
    targets = as_arrow(targets)
    table = pa.table(
        {
            "user_id": targets.column("user_id").cast(pa.int64()),
            "event_timestamp": targets.column("event_timestamp").cast(UTC_US),
            "churned": targets.column("churned").cast(pa.int64()),
        }
    )
    return table.sort_by([("user_id", "ascending"), ("event_timestamp", "ascending")])
