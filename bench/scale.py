"""Benchmark: how each stage of ``make demo`` grows with the world (``python -m bench scale``).

For each size (10,000, 100,000, 300,000 and 1,000,000 users, up to ``--users``; or
``SCALE_SIZES=10000,100000``), a fresh world runs the demo's stages in order, each as its own
``churnfs`` process measured by ``run_measured`` (wall time, peak resident memory of the process):
generate, the feature job without the review group, the review group (embedding and NLP: the
one stage whose cost is the model's, excluded from the per-user goal), apply, materialize,
check-consistency, train, smoke and monitor. The online store is a private ``redis-server`` per
world (``churnfs.store.redis_servers``), whose ``used_memory`` gives the bytes per user.

Goals (issue 15): per-user cost (seconds per 1,000 users) at the largest size within 1.3x of that
at 100,000 users for every stage but the review group, and peak memory at the largest size at most
2x that at 100,000. The plot (``docs/scaling.png``) shows both per stage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, VENV_BIN, Row, load_average, run_measured
from churnfs.io import write_text_atomic

SUITE = "scale"
SIZES = (10_000, 100_000, 300_000, 1_000_000)
REFERENCE = 100_000
COST_GOAL = 1.3
MEMORY_GOAL = 2.0
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("generate", ("generate", "--seed", "42")),
    ("features", ("features", "--groups", "profile,activity,labels")),
    ("review", ("features", "--groups", "review")),
    ("apply", ("apply",)),
    ("materialize", ("materialize", "--replace")),
    ("check-consistency", ("check-consistency",)),
    ("train", ("train",)),
    ("smoke", ("smoke",)),
    ("monitor", ("monitor",)),
)
EXCLUDED_FROM_COST_GOAL = ("review",)
"""The review group's time is the encoder's (CPU embedding), which the goal leaves out."""
PLOT = REPO / "docs" / "scaling.png"
RUNS_FILE = REPO / "docs" / "scaling-runs.json"
"""Every size's latest measurement (with its date, commit and load), so that a size can be run on
its own (a million users takes an hour here) and the curve still holds all sizes."""


@dataclass
class WorldRun:
    users: int
    seconds: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    redis_bytes_per_user: float = 0.0
    measured_at: str = ""
    commit: str = ""


def sizes_up_to(users: int) -> list[int]:
    """The sizes to run: ``SCALE_SIZES`` (comma-separated) or the standard ones up to ``users``
    (``SCALE_SIZES=recorded`` runs none: it tabulates and plots the recorded ones)."""
    chosen = os.environ.get("SCALE_SIZES")
    if chosen:
        return sorted(int(s) for s in chosen.split(",") if s.strip())
    return [s for s in SIZES if s <= users] or [users]


def run_world(workdir: Path, users: int) -> WorldRun:
    """Every stage of the demo on a fresh world of ``users`` users, each measured and recorded
    (``save_run``) as soon as it is done.

    With ``SCALE_DIR`` the world is kept there and a later run resumes at the first stage not
    yet recorded for this size (the materialization onward must run in one go: the private Redis
    lives as long as this call); ``SCALE_STOP_AFTER=<stage>`` stops after that stage."""
    from churnfs.store.redis_servers import redis_client, start_redis_server

    keep = os.environ.get("SCALE_DIR")
    stop_after = os.environ.get("SCALE_STOP_AFTER")
    root = Path(keep) if keep else workdir
    data_dir = root / f"world-{users}"
    previous = load_runs().get(users) if keep else None
    if previous is None:
        shutil.rmtree(data_dir, ignore_errors=True)
        run = WorldRun(users, measured_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", commit=_commit())
    else:
        run = previous
        run.commit = run.commit if run.commit == _commit() else f"{run.commit}..{_commit()}"
    server = start_redis_server(root / f"redis-{users}")
    env = {
        "DATA_DIR": str(data_dir),
        "REDIS_CONNECTION_STRING": server.address,
        "REDIS_TYPE": "redis",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    try:
        client = redis_client(server.address)
        for stage, args in STAGES:
            if stage in run.seconds:
                continue
            command = [str(VENV_BIN / "churnfs"), *args]
            if stage == "generate":
                command += ["--users", str(users)]
            if stage == "materialize":
                before = int(client.info("memory")["used_memory"])
            run.load[stage] = load_average()
            # monitor exits 3 when it finds drift (the demo's world has planted drift)
            measured = run_measured(command, env=env, ok_codes=(0, 3) if stage == "monitor" else (0,))
            run.seconds[stage] = measured.wall_s
            run.peak_mb[stage] = measured.peak_rss_mb
            if stage == "materialize":
                used = int(client.info("memory")["used_memory"]) - before
                run.redis_bytes_per_user = used / users
            save_run(run)
            if stage == stop_after:
                break
        client.close()
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    return run


def _commit() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def plot(runs: list[WorldRun], path: Path = PLOT) -> None:
    """Seconds per 1,000 users and peak memory against users, one line per stage (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [r.users for r in runs]
    figure, (cost, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for stage, _ in STAGES:
        done = [r for r in runs if stage in r.seconds]
        xs = [r.users for r in done]
        cost.plot(xs, [1000 * r.seconds[stage] / r.users for r in done], marker="o", label=stage)
        memory.plot(xs, [r.peak_mb[stage] / 1024 for r in done], marker="o", label=stage)
    cost.set(xscale="log", yscale="log", xlabel="users", ylabel="seconds per 1,000 users")
    cost.set_title("cost per user, by stage")
    memory.set(xscale="log", xlabel="users", ylabel="peak memory of the stage's process (GiB)")
    memory.set_title("peak memory, by stage")
    memory.axhline(6, color="grey", linestyle="--", linewidth=1)
    memory.text(users[0], 6.1, "6 GiB budget", color="grey", fontsize=8)
    for axis in (cost, memory):
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = memory.get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(STAGES), frameon=False)
    figure.suptitle("make demo's stages by world size (python -m bench scale)")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def rows(runs: list[WorldRun]) -> list[Row]:
    """One row per stage and size (seconds, per-1,000-user cost, peak memory), then the goals."""
    out: list[Row] = []
    for run in runs:
        note = f"{run.users:,} users, measured {run.measured_at} at {run.commit}"
        for stage, _ in STAGES:
            if stage not in run.seconds:
                out.append(Row(SUITE, f"{run.users:,} users: {stage}", "not run", "", "", None, note))
                continue
            per_k = 1000 * run.seconds[stage] / run.users
            out.append(
                Row(
                    SUITE,
                    f"{run.users:,} users: {stage}",
                    round(run.seconds[stage], 1),
                    "s",
                    "",
                    None,
                    f"{per_k:.3f} s per 1,000 users; peak {run.peak_mb[stage]:,.0f} MB; "
                    f"load {run.load[stage]:.1f} at start",
                )
            )
        out.append(
            Row(
                SUITE,
                f"{run.users:,} users: Redis memory per user",
                round(run.redis_bytes_per_user),
                "bytes",
                "",
                None,
                note,
            )
        )
    reference = next((r for r in runs if r.users == REFERENCE), None)
    if reference is None or runs[-1].users <= REFERENCE:
        return out
    largest = runs[-1]
    for stage, _ in STAGES:
        if stage not in largest.seconds or stage not in reference.seconds:
            continue
        ratio = (largest.seconds[stage] / largest.users) / (reference.seconds[stage] / reference.users)
        graded = stage not in EXCLUDED_FROM_COST_GOAL
        out.append(
            Row(
                SUITE,
                f"{stage}: cost per user, {largest.users:,} / {REFERENCE:,}",
                round(ratio, 2),
                "x",
                f"<= {COST_GOAL}" if graded else "none (the encoder's time)",
                ratio <= COST_GOAL if graded else None,
            )
        )
        memory_ratio = largest.peak_mb[stage] / reference.peak_mb[stage]
        out.append(
            Row(
                SUITE,
                f"{stage}: peak memory, {largest.users:,} / {REFERENCE:,}",
                round(memory_ratio, 2),
                "x",
                f"<= {MEMORY_GOAL}",
                memory_ratio <= MEMORY_GOAL,
                f"{largest.peak_mb[stage]:,.0f} MB against {reference.peak_mb[stage]:,.0f} MB",
            )
        )
    return out


def load_runs(path: Path = RUNS_FILE) -> dict[int, WorldRun]:
    if not path.exists():
        return {}
    return {int(k): WorldRun(**v) for k, v in json.loads(path.read_text()).items()}


def save_run(run: WorldRun, path: Path = RUNS_FILE) -> None:
    """Record one size's measurement beside the others (replacing that size's previous one)."""
    import fcntl
    import tempfile

    # sizes may run in parallel processes: one writer at a time
    with open(Path(tempfile.gettempdir()) / "churnfs-bench-scale.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = load_runs(path)
        runs[run.users] = run
        text = json.dumps({str(k): asdict(v) for k, v in sorted(runs.items())}, indent=1) + "\n"
        write_text_atomic(text, path)


def run(workdir: Path, users: int) -> list[Row]:
    """Run the sizes asked for (each recorded as soon as it is done), then tabulate and plot every
    recorded size up to the largest asked for."""
    if os.environ.get("SCALE_SIZES") == "recorded":  # tabulate and plot what was recorded
        sizes = [s for s in load_runs() if s <= users]
    else:
        sizes = sizes_up_to(users)
        for size in sizes:
            run_world(workdir, size)
    recorded = [r for s, r in sorted(load_runs().items()) if sizes and s <= max(sizes)]
    if recorded:
        plot(recorded)
    return rows(recorded)
