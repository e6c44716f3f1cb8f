"""``churnfs summary``: the end of ``make demo`` reports what the world really holds."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnfs.cli import app
from churnfs.settings import Settings
from churnfs.summary import world_summary

pytestmark = pytest.mark.integration


def test_summary_counts_match_the_files_and_name_the_champion(trained_world: Settings) -> None:
    summary = world_summary(trained_world, started_at=None)

    users = pq.read_metadata(trained_world.raw_dir / "user_table.parquet").num_rows
    events = pq.read_metadata(trained_world.raw_dir / "event_logs.parquet").num_rows
    assert f"user_table {users:,}" in summary["raw tables"]
    assert f"event_logs {events:,}" in summary["raw tables"]
    review_rows = pq.read_metadata(trained_world.offline_store_dir / "user_review_features.parquet").num_rows
    assert summary["offline user_review_features"].startswith(f"{review_rows:,} rows")
    assert summary["Feast registry"] == str(trained_world.registry_path)
    assert summary["model"].startswith("churn-model v")
    # the headline is the test period's figure, next to the oracle's on the same rows
    assert "test ROC-AUC 0." in summary["model"] and "validation" not in summary["model"]
    assert "of the oracle's on the same rows" in summary["model"]
    assert "wall time" not in summary


def test_summary_of_an_empty_folder_says_what_to_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["summary", "--data-dir", str(tmp_path), "--started-at", "0"])
    assert result.exit_code == 0, result.output
    assert "none (run `make data`)" in result.output
    assert "none (run `make train`)" in result.output
    assert "wall time" in result.output
