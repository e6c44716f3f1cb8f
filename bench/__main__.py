"""Run the benchmark suites and rewrite docs/benchmarks.md.

Usage: ``python -m bench [SUITE ...]`` (``make bench``). ``BENCH_USERS`` sets the scale
(default 100,000). Each suite is a module in this package with
``run(workdir: Path, users: int) -> list[Row]``; suites not run keep their previous section.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, Row, machine_description

SUITES = ["generate", "features", "reviews", "materialize", "online", "train", "serve", "monitor"]
DOC = REPO / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nWritten by `make bench` (`python -m bench`); each section is one suite's latest run.\n"
)


def render(suite: str, rows: list[Row], users: int) -> str:
    lines = [
        f"## {suite}",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine_description()}; "
        f"command: `make bench` (`python -m bench {suite}`, BENCH_USERS={users}).",
        "",
        "| metric | value | unit | goal | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = f"{r.value:,.3f}" if isinstance(r.value, float) else str(r.value)
        met = "" if r.ok is None else ("yes" if r.ok else "**no**")
        lines.append(f"| {r.metric} | {value} | {r.unit} | {r.goal} | {met} | {r.note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    suites = argv or SUITES
    users = int(os.environ.get("BENCH_USERS", "100000"))
    sections: dict[str, str] = {}
    if DOC.exists():
        for block in re.split(r"(?m)^(?=## )", DOC.read_text()):
            if block.startswith("## "):
                sections[block.split("\n", 1)[0][3:].strip()] = block.rstrip() + "\n"
    for suite in suites:
        module = importlib.import_module(f"bench.{suite}")
        with tempfile.TemporaryDirectory(prefix=f"bench-{suite}-") as tmp:
            rows = module.run(Path(tmp), users)
        sections[suite] = render(suite, rows, users)
        print(sections[suite])
    ordered = [s for s in SUITES if s in sections] + [s for s in sections if s not in SUITES]
    DOC.write_text(HEADER + "\n" + "\n".join(sections[s] for s in ordered))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
