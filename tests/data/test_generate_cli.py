"""Bad input through the real ``churnfs generate`` command: one line on stderr, a non-zero exit,
nothing written. And the parser behind it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from churnfs.errors import InvalidInputError
from datagen import parse_positive_int

CHURNFS = Path(sys.executable).with_name("churnfs")


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHURNFS), "generate", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--users", "0"], "USERS"),
        (["--users", "abc"], "USERS"),
        (["--end", "2025-13-01"], "--end must be a date"),
        (["--end", "2025-02-01"], "too early"),
    ],
)
def test_bad_numbers_give_one_line_and_write_nothing(tmp_path: Path, args: list[str], mentions: str) -> None:
    data_dir = tmp_path / "world"
    result = _generate(*args, "--data-dir", str(data_dir))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0], result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_unwritable_data_dir_gives_one_line_and_writes_nothing(tmp_path: Path, where: str) -> None:
    if where == "proc":
        data_dir = Path("/proc/churnfs-test-world")
    else:
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where a folder should be")
        data_dir = blocker / "world"
    result = _generate("--users", "50", "--data-dir", str(data_dir))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "DATA_DIR" in lines[0], result.stderr
    assert not data_dir.exists()
    if where == "under_a_file":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_a_small_world_through_the_cli_writes_every_raw_file(tmp_path: Path) -> None:
    result = _generate("--users", "300", "--seed", "3", "--no-drift", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert names == sorted(
        [
            "_oracle.parquet",
            "_reviews_truth.parquet",
            "_world.json",
            "event_logs.parquet",
            "review_table.parquet",
            "target_table.parquet",
            "user_table.parquet",
        ]
    )
    assert "300" in result.stdout


@pytest.mark.parametrize(
    ("value", "allow_zero", "expected"),
    [("42", False, 42), (" 7 ", False, 7), ("0", True, 0), ("100_000", False, 100000)],
)
def test_parse_positive_int_accepts_whole_numbers(value: str, allow_zero: bool, expected: int) -> None:
    assert parse_positive_int("USERS", value, allow_zero=allow_zero) == expected


@pytest.mark.parametrize(
    ("value", "allow_zero", "message"),
    [
        ("0", False, "USERS must be greater than 0, got 0"),
        ("-3", True, "USERS must be 0 or more, got -3"),
        ("abc", False, "USERS must be a whole number, got 'abc'"),
        ("1e5", False, "USERS must be a whole number, got '1e5'"),
        ("", False, "USERS must be a whole number, got ''"),
    ],
)
def test_parse_positive_int_rejects_with_one_clear_line(value: str, allow_zero: bool, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_positive_int("USERS", value, allow_zero=allow_zero)
    assert str(caught.value) == message
