"""Serving benchmark: our API against Feast's own ``feast serve``, like with like.

Four measured points, each side with the same users, the same request rate and concurrency and a
fresh server process per run:

* one entity per request: ``POST /predict/{user_id}`` with micro-batching off
  (``PREDICT_MICRO_BATCH=false``) against ``/get-online-features`` with one entity;
* 100 entities per request: ``POST /predict`` with 100 ids against ``/get-online-features`` with
  100 entities (the same 100 users in each request).

A fifth point, ``/predict/{user_id}`` as deployed (micro-batching on), carries the latency goal; it
is not a like-for-like comparison. Each point is measured ``runs`` times (alternating the order of
the points between runs), and the page shows the median and range over runs and the 1-minute load
average read before and after each point.

Per run and point: start the server on a free loopback port, wait for ``/health``, check one
answer holds every entity asked for, warm up for ``WARM_UP_S``, then drive it from a separate
load-generator process

* at a fixed rate (open loop: request *i* is due at ``i / rate``; latency counts from when it was
  due, so a slow server cannot hide its queue) for ``SECONDS``;
* at saturation (closed loop, a fixed number of connections back to back for ``SECONDS``),

and record the server's CPU seconds per answered request (its whole process tree: ``feast serve``
runs a gunicorn worker). ``/predict`` reads the features, scores them, explains the score and logs
the prediction; ``/get-online-features`` only reads the features of ``churn_model_v1``. Both read
through the online store ``feature_store.yaml`` names, from one private ``redis-server``.
``feast serve`` runs without worker recycling (``--max-requests 0``): its default restarts the
worker every 1,000 requests, which would measure restarts rather than serving.

The world: ``BENCH_SERVE_DATA_DIR`` names an existing trained world (e.g. ``data`` after
``make demo``) to reuse; otherwise one of ``min(users, MAX_WORLD_USERS)`` users is generated,
featurised, applied, materialized and trained under the bench's temporary folder (request
latency does not depend on the number of users: one Redis hash per user). Traffic only ever
goes to 127.0.0.1, bounded in count and time.

``python -m bench serve [--runs N]`` runs it; ``python -m bench.serve loadgen ...`` is the load
generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.common import REPO, VENV_BIN, Row, Spread, load_average
from churnfs.store.redis_servers import free_port, start_redis_server

logger = logging.getLogger(__name__)

SUITE = "serve"
SECONDS = float(os.environ.get("BENCH_SERVE_SECONDS", "10"))
WARM_UP_S = 2.0
CONCURRENCY = 16
BATCH = 100
BATCH_RATE = 2.0
BATCH_CONCURRENCY = 4
MAX_WORLD_USERS = 10_000
SEED = 11
HOST = "127.0.0.1"
P99_GOAL_MS = 15.0
GOAL_RATE = 100.0
FEATURE_SERVICE = "churn_model_v1"


# --- load generator (runs in its own process) ----------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for JSON APIs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def _raw_request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: keep-alive"]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _requests_for(kind: str, port: int, groups: list[list[int]]) -> list[bytes]:
    """One request per group of user ids: ``/predict/{id}`` or ``/features/{id}`` for groups of
    one, ``POST /predict`` for more; ``/get-online-features`` with the group as its entities."""
    if kind == "predict":
        return [
            _raw_request("POST", f"/predict/{g[0]}", port)
            if len(g) == 1
            else _raw_request("POST", "/predict", port, json.dumps({"user_ids": g}).encode())
            for g in groups
        ]
    if kind == "features" and all(len(g) == 1 for g in groups):
        return [_raw_request("GET", f"/features/{g[0]}", port) for g in groups]
    if kind == "feast":
        return [
            _raw_request(
                "POST",
                "/get-online-features",
                port,
                json.dumps({"feature_service": FEATURE_SERVICE, "entities": {"user_id": g}}).encode(),
            )
            for g in groups
        ]
    raise ValueError(f"unknown target kind {kind} for groups of {len(groups[0])}")


def user_groups(users: int, entities: int) -> list[list[int]]:
    """The users each request asks for: the same on every side and in every run (seeded), ids in
    1..users, distinct within a request."""
    rng = random.Random(SEED)
    if entities == 1:
        return [[rng.randint(1, users)] for _ in range(5000)]
    return [rng.sample(range(1, users + 1), entities) for _ in range(500)]


def _summary(latencies: list[float], errors: int, elapsed: float, sent: int) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "sent": sent,
        "ok": len(latencies),
        "errors": errors,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
        "mean_ms": statistics.fmean(ordered) * 1000 if ordered else float("nan"),
        "throughput_rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "seconds": elapsed,
    }


async def _fixed_rate(port: int, requests: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i / rate, latency counts from then."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await _Connection.open(port))
    latencies: list[float] = []
    errors = 0

    async def one(raw: bytes, due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await asyncio.wait_for(conn.request(raw), timeout=5)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn.close()
            pool.put_nowait(await _Connection.open(port))
            return
        pool.put_nowait(conn)
        if 200 <= status < 300:
            latencies.append(loop.time() - due)
        else:
            errors += 1

    start = loop.time() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(requests[i % len(requests)], due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    while not pool.empty():
        pool.get_nowait().close()
    return _summary(latencies, errors, elapsed, total)


async def _saturation(port: int, requests: list[bytes], concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed loop: ``concurrency`` connections send back to back until the time is up."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = loop.time() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors, sent
        conn = await _Connection.open(port)
        i = offset
        while loop.time() < deadline:
            began = loop.time()
            sent += 1
            try:
                status = await asyncio.wait_for(conn.request(requests[i % len(requests)]), timeout=5)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn.close()
                conn = await _Connection.open(port)
                continue
            if 200 <= status < 300:
                latencies.append(loop.time() - began)
            else:
                errors += 1
            i += concurrency
        conn.close()

    began = loop.time()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return _summary(latencies, errors, loop.time() - began, sent)


def loadgen_main(argv: list[str]) -> int:
    """``python -m bench.serve loadgen``: drive one target, print a JSON summary."""
    parser = argparse.ArgumentParser(prog="bench.serve loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=["predict", "features", "feast"], required=True)
    parser.add_argument("--users", type=int, required=True, help="ids are drawn from 1..users")
    parser.add_argument("--entities", type=int, default=1, help="users per request")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 means saturation")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 120:
        parser.error("--seconds must be in (0, 120]: the load is bounded in time")
    if not 1 <= args.entities <= args.users:
        parser.error("--entities must be in [1, --users]")
    requests = _requests_for(args.kind, args.port, user_groups(args.users, args.entities))
    if args.rate > 0:
        result = asyncio.run(_fixed_rate(args.port, requests, args.rate, args.seconds))
    else:
        result = asyncio.run(_saturation(args.port, requests, args.concurrency, args.seconds))
    print(json.dumps(result))
    return 0


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        pass
    return total


@dataclass(frozen=True)
class Point:
    """One measured configuration: a server, what each request asks for, and the load."""

    key: str
    label: str
    server: str  # "api" (churnfs serving) or "feast" (feast serve)
    kind: str  # the load generator's target kind
    entities: int  # users per request
    rate: float  # requests/s of the fixed-rate phase
    concurrency: int  # connections of the saturation phase
    micro_batch: bool = False  # the API's PREDICT_MICRO_BATCH


POINTS = (
    Point(
        "predict_1",
        "POST /predict/{user_id}, micro-batching off",
        "api",
        "predict",
        1,
        GOAL_RATE,
        CONCURRENCY,
    ),
    Point(
        "feast_1", "feast serve /get-online-features, 1 entity", "feast", "feast", 1, GOAL_RATE, CONCURRENCY
    ),
    Point(
        "predict_batch",
        f"POST /predict with {BATCH} user ids",
        "api",
        "predict",
        BATCH,
        BATCH_RATE,
        BATCH_CONCURRENCY,
    ),
    Point(
        "feast_batch",
        f"feast serve /get-online-features, {BATCH} entities",
        "feast",
        "feast",
        BATCH,
        BATCH_RATE,
        BATCH_CONCURRENCY,
    ),
    Point(
        "predict_deployed",
        "POST /predict/{user_id} as deployed (micro-batching on)",
        "api",
        "predict",
        1,
        GOAL_RATE,
        CONCURRENCY,
        micro_batch=True,
    ),
)
PAIRS = (
    ("predict_1", "feast_1", "one entity per request"),
    ("predict_batch", "feast_batch", f"{BATCH} entities per request"),
)


def drive_measured(
    server_pid: int, port: int, point: Point, users: int, rate: float, seconds: float = SECONDS
) -> dict[str, Any]:
    """``drive``, plus the server's CPU milliseconds per answered request."""
    before = process_tree_cpu_seconds(server_pid)
    result = drive(port, point, users, rate, seconds)
    used = process_tree_cpu_seconds(server_pid) - before
    result["cpu_ms_per_request"] = used * 1000 / max(result["ok"], 1)
    return result


def drive(port: int, point: Point, users: int, rate: float, seconds: float = SECONDS) -> dict[str, Any]:
    """Run the load generator in its own process (so it never shares a GIL with a server)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.serve",
        "loadgen",
        "--port",
        str(port),
        "--kind",
        point.kind,
        "--users",
        str(users),
        "--entities",
        str(point.entities),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--concurrency",
        str(point.concurrency),
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- the world and the servers ---------------------------------------------------------------------


def _wait_http(port: int, path: str, deadline_s: float, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://{HOST}:{port}{path}", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on port {port} did not answer {path} within {deadline_s:.0f} s")


@dataclass
class World:
    data_dir: Path
    users: int
    built_seconds: float | None


def _build_world(workdir: Path, users: int) -> World:
    """Reuse BENCH_SERVE_DATA_DIR, or generate, featurise and train a small world."""
    reuse = os.environ.get("BENCH_SERVE_DATA_DIR")
    if reuse:
        from churnfs.world import load_world_spec

        path = Path(reuse).resolve()
        return World(path, load_world_spec(path / "raw").users, None)
    from churnfs.settings import Settings
    from datagen import generate_world
    from training.train import train_models
    from transformations.job import build_features

    began = time.perf_counter()
    settings = Settings(data_dir=workdir / "world")
    n = min(users, MAX_WORLD_USERS)
    generate_world(settings, users=n, seed=SEED, drift=True, show_progress=False)
    build_features(settings, show_progress=False)
    from churnfs.store import apply_repo

    apply_repo(settings)
    train_models(settings, show_progress=False)
    return World(settings.data_dir.resolve(), n, time.perf_counter() - began)


def _champion(settings: Any) -> str:
    """``kind vN`` of the registered champion (what ``/predict`` scores with)."""
    from mlflow import MlflowClient

    uri = settings.resolved_mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("churn-model", "champion")
    kind = (
        client.get_run(version.run_id).data.tags.get("model_kind", "unknown") if version.run_id else "unknown"
    )
    return f"{kind} v{version.version}"


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


API_SCRIPT = (
    "import os, uvicorn\n"
    "from serving.app import create_app\n"
    "uvicorn.run(create_app(), host=os.environ['HOST'], port=int(os.environ['PORT']),"
    " log_config=None, access_log=False)\n"
)


def _start_server(point: Point, env: dict[str, str], port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A fresh server process for ``point``: the churnfs API (uvicorn, one process) or
    ``feast serve`` (one worker, no recycling)."""
    if point.server == "api":
        cmd = [sys.executable, "-c", API_SCRIPT]
        env = {
            **env,
            "HOST": HOST,
            "PORT": str(port),
            "PREDICT_MICRO_BATCH": str(point.micro_batch).lower(),
            "PREDICT_BATCH_LIMIT": str(max(BATCH, 1000)),
        }
    else:
        cmd = [
            str(VENV_BIN / "feast"),
            "-c",
            str(REPO),
            "serve",
            "-h",
            HOST,
            "-p",
            str(port),
            "--no-access-log",
            "--max-requests",
            "0",
        ]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _check_answer(point: Point, port: int, users: int) -> None:
    """One request of the point's kind answers every entity it asked for (the sides compared do
    the same work per request, not an error page or a partial answer)."""
    import httpx

    group = user_groups(users, point.entities)[0]
    url = f"http://{HOST}:{port}"
    if point.kind == "feast":
        body = {"feature_service": FEATURE_SERVICE, "entities": {"user_id": group}}
        answer = httpx.post(f"{url}/get-online-features", json=body, timeout=30).raise_for_status().json()
        answered = {len(result["values"]) for result in answer["results"]}
    elif point.entities == 1:
        answer = httpx.post(f"{url}/predict/{group[0]}", timeout=30).raise_for_status().json()
        answered = {1 if answer["user_id"] == group[0] else 0}
    else:
        answer = httpx.post(f"{url}/predict", json={"user_ids": group}, timeout=30).raise_for_status().json()
        answered = {len(answer["predictions"]) + len(answer["unknown_user_ids"])}
    if answered != {point.entities}:
        raise RuntimeError(f"{point.label}: asked for {point.entities} users, answered {answered}")


def measure_point(point: Point, world: World, env: dict[str, str], log_path: Path) -> dict[str, Any]:
    """One run of one point, in a server process started for it and stopped after it."""
    port = free_port(HOST)
    with open(log_path, "wb") as log:
        proc = _start_server(point, env, port, log)
        try:
            _wait_http(port, "/health", 180, proc)
            _check_answer(point, port, world.users)
            drive(port, point, world.users, rate=point.rate, seconds=WARM_UP_S)  # imports, caches
            load_before = load_average()
            fixed = drive_measured(proc.pid, port, point, world.users, rate=point.rate)
            saturated = drive_measured(proc.pid, port, point, world.users, rate=0)
            load_after = load_average()
        finally:
            _stop(proc)
    return {"fixed": fixed, "max": saturated, "load": [load_before, load_after]}


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    """Build the world, start Redis, then measure every point ``runs`` times, each in a fresh
    server process, alternating the order of the points between runs."""
    world = _build_world(workdir, users)
    redis_server = start_redis_server(workdir / "redis")
    redis_port = redis_server.port
    env = {
        **os.environ,
        "DATA_DIR": str(world.data_dir),
        "REDIS_CONNECTION_STRING": f"{HOST}:{redis_port}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    results: dict[str, list[dict[str, Any]]] = {p.key: [] for p in POINTS}
    try:
        from churnfs.settings import Settings
        from churnfs.store import apply_repo, materialize

        settings = Settings(data_dir=world.data_dir, redis_connection_string=f"{HOST}:{redis_port}")
        apply_repo(settings)
        began = time.perf_counter()
        materialize(settings)
        materialize_s = time.perf_counter() - began
        champion = _champion(settings)
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        for run_index in range(runs):
            for point in POINTS if run_index % 2 == 0 else POINTS[::-1]:
                logger.info("serve run %d/%d: %s", run_index + 1, runs, point.label)
                result = measure_point(point, world, env, logs / f"{point.key}-{run_index}.log")
                results[point.key].append(result)
    finally:
        redis_server.stop()
    return _rows(world, results, materialize_s, champion)


def _spread(runs: list[dict[str, Any]], phase: str, field: str, scale: float = 1.0) -> Spread:
    return Spread.of([r[phase][field] * scale for r in runs])


def _rows(
    world: World, results: dict[str, list[dict[str, Any]]], materialize_s: float, champion: str
) -> list[Row]:
    loads = [x for runs in results.values() for r in runs for x in r["load"]]
    note_world = f"{world.users:,} users, champion {champion}" + (
        f", world built in {world.built_seconds:.0f} s" if world.built_seconds else " (reused)"
    )
    rows = [
        Row(
            SUITE,
            "1-min load average before / after each point, lowest-highest",
            f"{min(loads):.2f}-{max(loads):.2f}",
            "",
            note=f"{os.cpu_count()} cores; the load generator runs on the same machine",
        ),
        Row(SUITE, "world", world.users, "users", note=note_world),
    ]
    for point in POINTS:
        runs = results[point.key]
        p99 = _spread(runs, "fixed", "p99_ms")
        cpu = _spread(runs, "fixed", "cpu_ms_per_request")
        errors = sum(r[phase]["errors"] for r in runs for phase in ("fixed", "max"))
        sent = sum(r[phase]["sent"] for r in runs for phase in ("fixed", "max"))
        loads = [x for r in runs for x in r["load"]]
        goal = f"<= {P99_GOAL_MS:g} ms" if point.key == "predict_deployed" else ""
        ok = (p99.median <= P99_GOAL_MS and errors == 0) if goal else None
        rows.append(
            Row(
                SUITE,
                f"{point.label}: p99 at {point.rate:g} req/s",
                round(p99.median, 3),
                "ms",
                goal,
                ok,
                f"{p99.as_range(unit=' ms')}; p50 {_spread(runs, 'fixed', 'p50_ms').describe(unit=' ms')}; "
                f"server CPU {cpu.describe(unit=' ms')} per request; {errors} errors in {sent} requests "
                f"(both phases); load {min(loads):.2f}-{max(loads):.2f}",
            )
        )
        users_per_s = _spread(runs, "max", "throughput_rps", point.entities)
        cpu = _spread(runs, "max", "cpu_ms_per_request", 1 / point.entities)
        max_p99 = _spread(runs, "max", "p99_ms")
        rows.append(
            Row(
                SUITE,
                f"{point.label}: max throughput ({point.concurrency} connections)",
                round(users_per_s.median, 1),
                "users/s",
                note=f"{users_per_s.as_range('.1f')}; p99 {max_p99.describe('.1f', ' ms')} per request; "
                f"server CPU {cpu.describe(unit=' ms')} per user",
            )
        )
    for ours, theirs, label in PAIRS:
        ratios = Spread.of(
            [
                a["max"]["throughput_rps"] / max(b["max"]["throughput_rps"], 1e-9)
                for a, b in zip(results[ours], results[theirs], strict=True)
            ]
        )
        rows.append(
            Row(
                SUITE,
                f"{label}: our max throughput / feast serve's",
                round(ratios.median, 3),
                "x",
                note=f"{ratios.as_range('.2f', 'x')}, runs paired in order; /predict also scores, explains "
                "and logs each user, feast serve only reads its features",
            )
        )
    rows.append(
        Row(SUITE, "materialize into the bench's Redis", round(materialize_s, 2), "s", note=note_world)
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "loadgen":
        sys.exit("usage: python -m bench.serve loadgen ... (the suite itself: python -m bench serve)")
    sys.exit(loadgen_main(sys.argv[2:]))
