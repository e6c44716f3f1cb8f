"""Run the benchmark suites and rewrite their sections of docs/benchmarks.md.

Usage: ``python -m bench [SUITE ...] [--users N] [--runs N] [--output PATH] [--stale]``
(``make bench``). ``--users`` (or ``BENCH_USERS``) sets the scale (default 100,000); ``--runs``
how many times the suites that repeat their comparisons do so (default 3: median and range);
``--output`` writes another copy of the page (trial runs on a busy machine, say). Each suite is
a module in this package with ``run(workdir: Path, users: int) -> list[Row]`` (plus ``runs`` where
it repeats); suites not run keep their previous section. Each section says when it was measured
and the commit of the suite's code; ``--stale`` lists the suites whose code changed since.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, Row, machine_description

SUITES = [
    "generate",
    "features",
    "reviews",
    "sentiment",
    "materialize",
    "online",
    "cluster",
    "train",
    "serve",
    "monitor",
    "spark",
    "stream",
    "scale",
]
DOC = REPO / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nWritten by `make bench` (`python -m bench`); each section is one suite's latest run,"
    " dated, with the\ncommit of the suite's code. Sections named `history` keep earlier numbers for"
    " comparison only.\n"
)
CODE_STAMP = re.compile(r"code: `bench/(\w+)\.py` at ([0-9a-f]{7,40})")


def code_commit(suite: str) -> str:
    """The last commit that changed ``bench/<suite>.py``, marked ``+changes`` when the working
    copy differs from it (numbers from uncommitted code say so)."""
    path = f"bench/{suite}.py"
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run(
        [*git, "log", "-1", "--format=%h", "--", path], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", path], check=False).returncode != 0
    return (commit or "uncommitted") + ("+changes" if dirty else "")


def render(suite: str, rows: list[Row], users: int, runs: int | None) -> str:
    command = f"python -m bench {suite} --users {users}" + (f" --runs {runs}" if runs else "")
    lines = [
        f"## {suite}",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine_description()}; "
        f"command: `{command}`; code: `bench/{suite}.py` at {code_commit(suite)}.",
        "",
        "| metric | value | unit | goal | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = f"{r.value:,.3f}" if isinstance(r.value, float) else str(r.value)
        met = "" if r.ok is None else ("yes" if r.ok else "**no**")
        lines.append(f"| {r.metric} | {value} | {r.unit} | {r.goal} | {met} | {r.note} |")
    return "\n".join(lines) + "\n"


def read_sections(path: Path) -> dict[str, str]:
    """The page's ``## `` sections by title, in order."""
    sections: dict[str, str] = {}
    if path.exists():
        for block in re.split(r"(?m)^(?=## )", path.read_text()):
            if block.startswith("## "):
                sections[block.split("\n", 1)[0][3:].strip()] = block.rstrip() + "\n"
    return sections


def stale_suites(sections: dict[str, str]) -> list[str]:
    """Suites with no section, no code stamp, or a stamp older than their code's last commit."""
    stale = []
    for suite in SUITES:
        stamp = CODE_STAMP.search(sections.get(suite, ""))
        if stamp is None or stamp.group(2) != code_commit(suite):
            stale.append(suite)
    return stale


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n", 1)[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE", help="any of " + ", ".join(SUITES))
    parser.add_argument("--users", type=int, default=int(os.environ.get("BENCH_USERS", "100000")))
    parser.add_argument("--runs", type=int, default=3, help="repeats of each comparison (at least 1)")
    parser.add_argument("--output", type=Path, default=DOC, help="the page to rewrite (default: %(default)s)")
    parser.add_argument("--stale", action="store_true", help="only list the suites to re-run, and exit")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}: choose from {', '.join(SUITES)}")
    source = args.output if args.output.exists() else DOC
    sections = read_sections(source)
    if args.stale:
        print(" ".join(stale_suites(sections)))
        return 0
    for suite in args.suites or SUITES:
        module = importlib.import_module(f"bench.{suite}")
        repeats = "runs" in inspect.signature(module.run).parameters
        with tempfile.TemporaryDirectory(prefix=f"bench-{suite}-") as tmp:
            if repeats:
                rows = module.run(Path(tmp), args.users, runs=args.runs)
            else:
                rows = module.run(Path(tmp), args.users)
        sections[suite] = render(suite, rows, args.users, args.runs if repeats else None)
        print(sections[suite])
        ordered = [s for s in SUITES if s in sections] + [s for s in sections if s not in SUITES]
        args.output.write_text(HEADER + "\n" + "\n".join(sections[s] for s in ordered))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
