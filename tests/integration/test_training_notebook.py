"""The point-in-time training notebook runs top to bottom on the small world."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnfs.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

NOTEBOOK = PROJECT_ROOT / "notebooks" / "point_in_time_training.ipynb"


def _text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_point_in_time_notebook_runs_on_the_world_in_data_dir(
    feast_world: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("DATA_DIR", str(feast_world.data_dir))  # the kernel inherits the environment
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not any(o.get("output_type") == "error" for o in c.get("outputs", [])) for c in code)
    outputs = "\n".join(_text(c) for c in code)
    assert "world: 3,000 users, seed 7" in outputs
    assert "user_activity_features" in outputs and "rows_without_values" in outputs
    assert "roc_auc share of oracle" in outputs and "oracle" in outputs
    assert "contrib__" in outputs
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory
