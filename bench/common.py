"""Shared benchmark plumbing: measure a subprocess (wall time and its own peak memory), take
medians and ranges over runs, read the load, describe the machine, and the row type every suite
returns."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"


@dataclass
class Row:
    """One line of the benchmarks table."""

    suite: str
    metric: str
    value: float | str
    unit: str = ""
    goal: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float
    stdout: str


LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs a command and writes its peak RSS (KiB) to a file. Linux keeps a process's peak RSS across
``fork`` and ``exec``: a command forked straight from a benchmark that holds gigabytes (a world it
built in process) would report the benchmark's size. Forked from this small interpreter instead,
its peak starts from the interpreter's (about 10 MB)."""


def run_measured(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    ok_codes: Sequence[int] = (0,),
) -> Measured:
    """Run ``cmd`` and return its wall time and its peak resident memory (``wait4`` rusage of
    that child and the descendants it waited for, measured by ``LAUNCHER``). Raises on an exit
    code not in ``ok_codes``."""
    import sys
    import tempfile

    full_env = {**os.environ, **(env or {})}
    with tempfile.NamedTemporaryFile(prefix="peak-", suffix=".txt") as peak_file:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, peak_file.name, *cmd],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = proc.communicate()
        wall = time.perf_counter() - start
        if proc.returncode not in ok_codes:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-4000:]}")
        peak_kib = float(Path(peak_file.name).read_text() or 0)
    return Measured(wall_s=wall, peak_rss_mb=peak_kib / 1024.0, stdout=out)


def marked_line(stdout: str, marker: str) -> str:
    """The rest of the first line of ``stdout`` that starts with ``marker`` and a space (how the
    suites' child scripts hand back results); raises with the output's tail when there is none."""
    for line in stdout.splitlines():
        if line.startswith(marker + " "):
            return line[len(marker) + 1 :]
    raise RuntimeError(f"no {marker} line in output:\n{stdout[-3000:]}")


@dataclass(frozen=True)
class Spread:
    """The median and range of one quantity over repeated runs."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no runs to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_range(self, fmt: str = ".2f", unit: str = "") -> str:
        """``range 1.10-1.40 ms over 3 runs``: the note of a row whose value is the median."""
        runs = f"{self.runs} run{'s' if self.runs != 1 else ''}"
        return f"range {self.low:{fmt}}-{self.high:{fmt}}{unit} over {runs}"

    def describe(self, fmt: str = ".2f", unit: str = "") -> str:
        """``median 1.23 ms (range 1.10-1.40, 3 runs)``: how the suites' notes quote a spread."""
        return (
            f"median {self.median:{fmt}}{unit} (range {self.low:{fmt}}-{self.high:{fmt}}{unit}, "
            f"{self.runs} run{'s' if self.runs != 1 else ''})"
        )


def load_average() -> float:
    """The 1-minute load average: recorded with every timed run, since the machine may be shared."""
    return os.getloadavg()[0]


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_description() -> str:
    """CPU model, cores, memory and Python: the header of the benchmarks page."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, Python {platform.python_version()}"
