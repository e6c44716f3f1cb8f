"""A demo run's output is progress, results and real problems: the CLI stages after `features`,
run as `make demo` runs them (one process each) on a copy of the session's trained world, print
no line more than three times (what churnfs/logs.py keeps and drops)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from churnfs.settings import Settings
from tests.integration.test_serving_support import ServedWorld, serve_world

pytestmark = pytest.mark.integration

MAX_REPEATS = 3
# make demo's stages after `features` that touch the registry, Redis and MLflow (`train` is left
# out: it would register a model in the MLflow store the session's other tests read).
STAGES = (
    ["apply"],
    ["materialize", "--replace"],
    ["check-consistency"],
    ["smoke"],
    ["monitor"],
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIME_PREFIX = re.compile(r"^(\d{4}/\d{2}/\d{2} )?\d{2}:\d{2}:\d{2} ")
_JSON_VOLATILE = re.compile(r'"(time|request_id|duration_ms)": ("[^"]*"|[0-9.]+), ?')
# Lines that are not log lines: rich tables' rows and rules, and progress bars redrawn in place.
_NOT_A_LOG_LINE = re.compile(r"^[│┃┡┏└┌├╇━─╭╰]|^\s*\d+%\|")


@pytest.fixture(scope="module")
def served(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWorld]:
    with serve_world(trained_world, tmp_path_factory.mktemp("stage-logs")) as world:
        yield world


def stage_output(served: ServedWorld) -> str:
    """stdout and stderr of each stage, in order, as a terminal shows them."""
    churnfs = str(Path(sys.executable).parent / "churnfs")
    env = {k: v for k, v in os.environ.items() if k not in {"CHURNFS_API_KEY", "MLFLOW_CONFIGURE_LOGGING"}}
    env.update(
        DATA_DIR=str(served.settings.data_dir),
        REDIS_CONNECTION_STRING=served.settings.redis_connection_string,
        MLFLOW_TRACKING_URI=served.settings.resolved_mlflow_tracking_uri,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        COLUMNS="80",
    )
    out = []
    for stage in STAGES:
        run = subprocess.run(
            [churnfs, *stage], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert run.returncode in (0, 3), f"churnfs {' '.join(stage)} failed:\n{run.stderr[-3000:]}"
        out.append(run.stdout + run.stderr)
    return "\n".join(out)


def repeated_lines(output: str) -> dict[str, int]:
    """Lines shown more than MAX_REPEATS times, with times, request ids and durations removed."""
    lines = []
    for raw in re.split(r"[\r\n]+", output):
        line = _JSON_VOLATILE.sub("", _TIME_PREFIX.sub("", _ANSI.sub("", raw))).strip()
        if line and not _NOT_A_LOG_LINE.match(line):
            lines.append(line)
    return {line: n for line, n in Counter(lines).items() if n > MAX_REPEATS}


def test_repeated_lines_are_found() -> None:
    output = "12:00:01 INFO feast: Registry cache expired\n" * 4 + "│ a │ b │\n" * 5 + "done\n"
    assert repeated_lines(output) == {"INFO feast: Registry cache expired": 4}


@pytest.mark.slow
def test_demo_stages_print_no_line_more_than_three_times(served: ServedWorld) -> None:
    output = stage_output(served)
    assert "Registry cache expired" not in output
    assert "DeprecationWarning" not in output
    assert "churn-model" in output  # the stages did run: smoke names the model it served
    assert repeated_lines(output) == {}
