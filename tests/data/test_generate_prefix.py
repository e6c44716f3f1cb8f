"""The world is causal: every raw row dated before t depends only on the world before t.

The guard for every generator change: the same users and seed generated with two different ends
give identical rows before the earlier end, and identical labels and oracle probabilities for
the cutoffs whose label horizon ends by then. A generator that lets later activity shape earlier
rows (who writes reviews judged by the whole window's events, a scale fitted on the whole
window) fails it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from churnfs.errors import InvalidInputError
from churnfs.settings import Settings
from churnfs.world import WORLD_START, load_world_spec
from datagen import generate_world

USERS = 1200
SEED = 5
TIME_COLUMN = {
    "user_table": "signup_date",
    "event_logs": "event_timestamp",
    "review_table": "review_timestamp",
    "_reviews_truth": None,
}


def _world(root: Path, end: date | None) -> Path:
    settings = Settings(data_dir=root)
    generate_world(settings, users=USERS, seed=SEED, show_progress=False, end=end, dirty_fraction=0.01)
    return settings.raw_dir


def _before(table: pa.Table, column: str, until: datetime) -> pa.Table:
    return table.filter(pc.less(table[column], pa.scalar(until, type=table.schema.field(column).type)))


@pytest.fixture(scope="module")
def two_ends(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("prefix")
    return _world(root / "short", date(2025, 5, 20)), _world(root / "full", None)


def test_worlds_with_two_ends_agree_on_every_raw_row_before_the_earlier_end(
    two_ends: tuple[Path, Path],
) -> None:
    short_dir, full_dir = two_ends
    short_spec, full_spec = load_world_spec(short_dir), load_world_spec(full_dir)
    assert short_spec.last_day == date(2025, 5, 20)
    assert full_spec.end - short_spec.end == timedelta(days=47)
    until = short_spec.end
    for name in ("user_table", "event_logs", "review_table"):
        column = TIME_COLUMN[name]
        short = pq.read_table(short_dir / f"{name}.parquet")
        full = pq.read_table(full_dir / f"{name}.parquet")
        short_prefix, full_prefix = _before(short, column, until), _before(full, column, until)
        assert short_prefix.num_rows > 100, name
        assert full.num_rows > full_prefix.num_rows, f"{name}: the longer world adds nothing after the end"
        assert short_prefix.equals(full_prefix), f"{name} differs before {until:%Y-%m-%d}"


def test_the_shorter_world_holds_nothing_dated_after_its_end_but_bad_clock_rows(
    two_ends: tuple[Path, Path],
) -> None:
    short_dir, _ = two_ends
    spec = load_world_spec(short_dir)
    reviews = pq.read_table(short_dir / "review_table.parquet").to_pandas()
    users = pq.read_table(short_dir / "user_table.parquet").to_pandas()
    assert (reviews["review_timestamp"] < spec.end).all()
    assert (users["signup_date"] < spec.end).all()
    events = pq.read_table(short_dir / "event_logs.parquet").to_pandas()
    late = events[events["event_timestamp"] >= spec.end]
    # only the rows a bad clock dated past the end (about a third of the 1% drawn dirty)
    assert 0 < len(late) < 0.01 * len(events)


def test_labels_agree_for_every_cutoff_whose_horizon_ends_before_the_earlier_end(
    two_ends: tuple[Path, Path],
) -> None:
    short_dir, full_dir = two_ends
    short_spec = load_world_spec(short_dir)
    shared = [c for c in short_spec.cutoffs() if c + short_spec.horizon <= short_spec.end]
    assert len(shared) >= 5
    for name in ("target_table", "_oracle"):
        short = pq.read_table(short_dir / f"{name}.parquet").to_pandas()
        full = pq.read_table(full_dir / f"{name}.parquet").to_pandas()
        assert set(short["event_timestamp"]) == set(shared), name
        full = full[full["event_timestamp"].isin(shared)].reset_index(drop=True)
        assert len(full) > 1000
        assert short.equals(full), name


def test_end_outside_the_supported_range_is_refused_in_one_line(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    too_early = WORLD_START.date() + timedelta(days=20)
    with pytest.raises(InvalidInputError, match=r"too early.*2025-03-04"):
        generate_world(settings, users=10, seed=1, show_progress=False, end=too_early)
    assert not settings.raw_dir.exists()
