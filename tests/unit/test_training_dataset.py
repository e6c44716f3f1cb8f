"""Label rows for training (training/dataset.py) from a hand-made ``churn_labels`` file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from churnfs.errors import MissingDataError
from churnfs.io import write_parquet_atomic
from training.dataset import read_label_rows

FEB_03 = datetime(2025, 2, 3, tzinfo=UTC)
FEB_17 = datetime(2025, 2, 17, tzinfo=UTC)
MAR_03 = datetime(2025, 3, 3, tzinfo=UTC)


def _labels(path: Path) -> Path:
    """churn_labels in the offline store's shape, in as-of order (not user order)."""
    frame = pd.DataFrame(
        {
            "user_id": [2, 1, 3, 1, 2],
            "event_timestamp": pd.to_datetime([FEB_03, FEB_03, FEB_17, FEB_17, MAR_03], utc=True),
            "created_timestamp": pd.to_datetime([MAR_03] * 5, utc=True),
            "churned": [1, 0, 0, 1, 0],
        }
    )
    write_parquet_atomic(frame, path)
    return path


def test_label_rows_at_the_cutoffs_sorted_by_user_then_cutoff(tmp_path: Path) -> None:
    rows = read_label_rows(_labels(tmp_path / "churn_labels.parquet"), [FEB_17, FEB_03])
    assert list(rows.columns) == ["user_id", "event_timestamp", "churned"]
    assert rows.values.tolist() == [
        [1, pd.Timestamp(FEB_03), 0],
        [1, pd.Timestamp(FEB_17), 1],
        [2, pd.Timestamp(FEB_03), 1],
        [3, pd.Timestamp(FEB_17), 0],
    ]
    assert str(rows["event_timestamp"].dt.tz) == "UTC"


def test_missing_label_file_or_cutoffs_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="run `make features` first"):
        read_label_rows(tmp_path / "churn_labels.parquet", [FEB_03])
    path = _labels(tmp_path / "churn_labels.parquet")
    with pytest.raises(MissingDataError, match="no label rows at the cutoffs"):
        read_label_rows(path, [datetime(2025, 6, 2, tzinfo=UTC)])
