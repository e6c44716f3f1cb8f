"""The generator is deterministic, seed-sensitive, and all-or-nothing on disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import datagen.generator
from churnfs.errors import InvalidInputError
from churnfs.settings import Settings
from datagen import generate_world

RAW_FILES = (
    "user_table.parquet",
    "event_logs.parquet",
    "review_table.parquet",
    "target_table.parquet",
    "_oracle.parquet",
    "_reviews_truth.parquet",
    "_world.json",
)


def _generate(root: Path, users: int = 800, seed: int = 11) -> Path:
    settings = Settings(data_dir=root)
    generate_world(settings, users=users, seed=seed, show_progress=False)
    return settings.raw_dir


def _contents(raw_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(raw_dir.iterdir())}


def test_same_users_and_seed_give_byte_identical_files(tmp_path: Path) -> None:
    first = _contents(_generate(tmp_path / "a"))
    second = _contents(_generate(tmp_path / "b"))
    assert sorted(first) == sorted(RAW_FILES)
    assert first == second


def test_drawing_and_writing_a_slice_of_users_at_a_time_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hazard matrices and the event table are built a slice of users at a time so that memory
    stays bounded at a million users; the slice size must not change a byte of the world (dirty
    rows included: a null user sorts into the last slice)."""
    import datagen.population

    def generate(root: Path) -> dict[str, bytes]:
        settings = Settings(data_dir=root)
        generate_world(settings, users=1500, seed=5, show_progress=False, dirty_fraction=0.02)
        return _contents(settings.raw_dir)

    whole = generate(tmp_path / "whole")
    monkeypatch.setattr(datagen.population, "HAZARD_SLICE_USERS", 170)
    monkeypatch.setattr(datagen.generator, "EVENT_SLICE_USERS", 130)
    monkeypatch.setattr(datagen.generator, "USER_ROW_GROUP", 4096)  # row groups across slices
    sliced = generate(tmp_path / "sliced")
    monkeypatch.setattr(datagen.generator, "EVENT_SLICE_USERS", 10**9)
    one_slice = generate(tmp_path / "one-slice")
    events = pq.ParquetFile(tmp_path / "sliced" / "raw" / "event_logs.parquet")
    assert events.metadata.num_row_groups > 3
    assert sliced == one_slice
    assert {k: v for k, v in sliced.items() if k != "event_logs.parquet"} == {
        k: v for k, v in whole.items() if k != "event_logs.parquet"
    }
    assert pq.read_table(tmp_path / "sliced" / "raw" / "event_logs.parquet").equals(
        pq.read_table(tmp_path / "whole" / "raw" / "event_logs.parquet")
    )


def test_another_seed_gives_another_world(tmp_path: Path) -> None:
    one = _generate(tmp_path / "a", seed=11)
    other = _generate(tmp_path / "b", seed=12)
    for name in ("user_table.parquet", "event_logs.parquet", "review_table.parquet"):
        assert not pq.read_table(one / name).equals(pq.read_table(other / name)), name


def test_regenerating_replaces_the_world_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    _generate(tmp_path, users=500, seed=1)
    raw_dir = _generate(tmp_path, users=600, seed=2)
    assert pq.read_metadata(raw_dir / "user_table.parquet").num_rows == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(RAW_FILES)


def test_a_failed_write_keeps_the_previous_world_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_dir = _generate(tmp_path, users=500, seed=1)
    before = _contents(raw_dir)
    real_write = datagen.generator.pq.write_table
    calls = {"n": 0}

    def disk_fills_up(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(datagen.generator.pq, "write_table", disk_fills_up)
    with pytest.raises(InvalidInputError, match="No space left on device"):
        generate_world(Settings(data_dir=tmp_path), users=600, seed=2, show_progress=False)
    assert calls["n"] == 3
    assert _contents(raw_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_the_events_spilled_while_drawing_are_gone_after_a_run_and_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The days spill their events into the staging folder; the spill never reaches raw/, and a
    run that fails while reading it back leaves nothing but the previous world."""
    raw_dir = _generate(tmp_path, users=500, seed=1)
    before = _contents(raw_dir)
    assert sorted(before) == sorted(RAW_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    monkeypatch.setattr(datagen.generator, "EVENT_SLICE_USERS", 100)  # several slices to read back
    real_event_table = datagen.generator.event_table
    spill_files_seen: list[int] = []

    def disk_fails_on_the_second_slice(*args: object, **kwargs: object) -> object:
        spill = tmp_path.glob(f".raw.*/{datagen.generator.EVENT_SPILL_FOLDER}/*.bin")
        spill_files_seen.append(len(list(spill)))
        if len(spill_files_seen) == 2:
            raise OSError(5, "Input/output error")
        return real_event_table(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(datagen.generator, "event_table", disk_fails_on_the_second_slice)
    with pytest.raises(InvalidInputError, match="Input/output error"):
        generate_world(Settings(data_dir=tmp_path), users=600, seed=2, show_progress=False)
    assert len(spill_files_seen) == 2 and spill_files_seen[0] > 0
    assert _contents(raw_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_a_failed_first_run_leaves_no_data_dir_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(datagen.generator.pq, "write_table", disk_full)
    with pytest.raises(InvalidInputError, match="cannot write the raw world"):
        generate_world(Settings(data_dir=tmp_path / "new" / "world"), users=50, seed=1, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_out_of_range_arguments_are_rejected_before_anything_is_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "world")
    for kwargs, message in (
        ({"users": 0, "seed": 1}, "USERS"),
        ({"users": 10, "seed": -1}, "SEED"),
        ({"users": 10, "seed": 1, "dirty_fraction": 0.5}, "dirty fraction"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            generate_world(settings, show_progress=False, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "world").exists()
