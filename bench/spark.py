"""Benchmark of the Spark engine against the DuckDB engine, stage by stage.

Each (engine, feature group) is run ``runs`` times in a fresh subprocess (``build_features(
groups=[group], engine=...)``, alternating engines), on the same world: wall time of the
subprocess, seconds inside the job, and the peak resident memory of the whole process tree
sampled every 0.2 s (the driver's Python, Spark's JVM, which in ``local[2]`` also runs the
executors, and the Python workers), also split by role. The ratio is Spark / DuckDB wall time.

The profile, activity and label groups run at ``users``; the review group runs on a world of
``REVIEW_USERS`` users, cold (no embedding cache, no topic model: embedding dominates) and warm (a
re-run over the cache), since a cold 100,000-user review build embeds 60,000 texts (8-15 min)
per run. Spark runs ``local[2]`` on this machine's 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.common import VENV_BIN, Row, Spread, load_average, marked_line, run_measured

SUITE = "spark"
RUNS = 3
REVIEW_USERS = 10_000
GROUP_GOALS = {"profile": 3.0, "activity": 3.0, "labels": None, "review": 1.5}
"""Goal on the Spark / DuckDB wall-time ratio (issue 14); None: no goal."""

JOB_SCRIPT = """
import json, sys
from churnfs.settings import Settings
from transformations.job import build_features
group, engine = sys.argv[1], sys.argv[2]
summary = build_features(Settings(), groups=[group], engine=engine, show_progress=False)
print("SUMMARY " + json.dumps(summary, default=str))
"""


@dataclass
class TreeRun:
    wall_s: float
    peak_total_mb: float
    peak_by_role_mb: dict[str, float]
    stdout: str


def _role(process: psutil.Process, root_pid: int) -> str:
    try:
        name = process.name()
    except psutil.Error:
        return "other"
    if process.pid == root_pid:
        return "driver (python)"
    if "java" in name:
        return "spark jvm"
    return "python workers" if "python" in name else "other"


def run_tree(cmd: list[str], env: dict[str, str]) -> TreeRun:
    """Run ``cmd``; sample the resident memory of it and all its descendants every 0.2 s."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak_total = 0.0
    peak_roles: dict[str, float] = {}
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        roles: dict[str, float] = {}
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for process in tree:
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.Error:
                continue
            role = _role(process, proc.pid)
            roles[role] = roles.get(role, 0.0) + rss
        peak_total = max(peak_total, sum(roles.values()))
        for role, mb in roles.items():
            peak_roles[role] = max(peak_roles.get(role, 0.0), mb)
        time.sleep(0.2)
    reader.join()
    wall = time.perf_counter() - start
    out = "".join(output)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-4000:]}")
    return TreeRun(wall, peak_total, peak_roles, out)


def _world(folder: Path, users: int) -> Path:
    run_measured(
        [str(VENV_BIN / "churnfs"), "generate", "--users", str(users), "--seed", "42"],
        env={"DATA_DIR": str(folder)},
    )
    return folder


def _job(world: Path, group: str, engine: str) -> tuple[TreeRun, dict[str, object]]:
    env = {"DATA_DIR": str(world), "SPARK_MASTER": "local[2]", "HF_HUB_OFFLINE": "1"}
    measured = run_tree([str(VENV_BIN / "python"), "-c", JOB_SCRIPT, group, engine], env)
    return measured, json.loads(marked_line(measured.stdout, "SUMMARY"))


def _cold(world: Path) -> None:
    """Forget every embedding and topic model of ``world`` (the review group starts cold)."""
    shutil.rmtree(world / "artifacts" / "embeddings", ignore_errors=True)
    shutil.rmtree(world / "artifacts" / "topic_model", ignore_errors=True)


def _compare(
    rows: list[Row], world: Path, group: str, label: str, runs: int, before_each: object = None
) -> None:
    results: dict[str, list[tuple[TreeRun, dict[str, object]]]] = {"duckdb": [], "spark": []}
    load = load_average()
    for _ in range(runs):
        for engine in ("duckdb", "spark"):  # alternated, so drift in the machine's load hits both
            if callable(before_each):
                before_each()
            results[engine].append(_job(world, group, engine))
    walls = {e: Spread.of([r.wall_s for r, _ in rs]) for e, rs in results.items()}
    inside = {e: Spread.of([float(s["seconds"]) for _, s in rs]) for e, rs in results.items()}
    ratios = Spread.of(
        [s.wall_s / d.wall_s for (d, _), (s, _) in zip(results["duckdb"], results["spark"], strict=True)]
    )
    for engine in ("duckdb", "spark"):
        peak = max(r.peak_total_mb for r, _ in results[engine])
        by_role = {}
        for r, _ in results[engine]:
            for role, mb in r.peak_by_role_mb.items():
                by_role[role] = max(by_role.get(role, 0.0), mb)
        roles = ", ".join(f"{role} {mb:.0f}" for role, mb in sorted(by_role.items()))
        rows.append(
            Row(
                SUITE,
                f"{label}: {engine} wall",
                walls[engine].median,
                "s",
                note=f"{walls[engine].as_range()}; inside the job {inside[engine].describe(unit=' s')}",
            )
        )
        rows.append(
            Row(
                SUITE,
                f"{label}: {engine} peak memory",
                peak,
                "MB",
                note=f"process tree; by role (MB): {roles}",
            )
        )
    goal = GROUP_GOALS[group]
    rows.append(
        Row(
            SUITE,
            f"{label}: spark / duckdb wall",
            ratios.median,
            "x",
            f"<= {goal}" if goal else "",
            None if goal is None else ratios.median <= goal,
            f"{ratios.as_range()}, fresh subprocess each, engines alternated; 1-min load {load:.1f} before",
        )
    )


def run(workdir: Path, users: int, runs: int = RUNS) -> list[Row]:
    """The profile, activity and label groups at ``users``; the review group at REVIEW_USERS,
    cold and warm."""
    review_users = min(REVIEW_USERS, users)
    rows = [
        Row(SUITE, "users (profile, activity, labels)", users),
        Row(SUITE, "users (review)", review_users),
    ]
    world = _world(workdir / "world", users)
    for group in ("profile", "activity", "labels"):
        _compare(rows, world, group, group, runs)
    small = _world(workdir / "review-world", review_users)
    _job(small, "review", "duckdb")  # untimed: exports the model to ONNX once, as any first run does
    _compare(rows, small, "review", "review cold", runs, before_each=lambda: _cold(small))
    _compare(rows, small, "review", "review warm", runs)
    return rows
