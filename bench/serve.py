"""Serving benchmark: ``/predict/{user_id}`` against Feast's own ``feast serve``, side by side.

One run builds (or reuses) a trained world, loads it into a private ``redis-server`` on a free
loopback port, starts the churnfs API (uvicorn, one process) and ``feast serve`` (one worker) on
the same feature repository, then drives both from a separate load-generator process:

* at fixed rates (open loop: request *i* is due at ``i / rate``; latency counts from when it was
  due, so a slow server cannot hide its queue), ``RATES`` requests/s for ``SECONDS`` each;
* at saturation (closed loop, ``CONCURRENCY`` connections back to back for ``SECONDS``).

``/predict`` reads the features, scores them, explains the score and logs the prediction;
``feast serve``'s ``/get-online-features`` only reads the features of ``churn_model_v1``.
Besides latency and throughput, each phase records the server's CPU seconds per answered request
(its whole process tree: ``feast serve`` runs a gunicorn worker), and the run records the load
average, since the machine may be shared. ``feast serve`` runs without worker recycling
(``--max-requests 0``): its default restarts the worker every 1,000 requests, every few seconds
at these rates, which would measure restarts rather than serving.

The world: ``BENCH_SERVE_DATA_DIR`` names an existing trained world (e.g. ``data`` after
``make demo``) to reuse; otherwise one of ``min(users, MAX_WORLD_USERS)`` users is generated,
featurised, applied, materialized and trained under the bench's temporary folder (request
latency does not depend on the number of users: one Redis hash per user). Traffic only ever
goes to 127.0.0.1, bounded in count and time.

``python -m bench serve`` runs it; ``python -m bench.serve loadgen ...`` is the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, VENV_BIN, Row

logger = logging.getLogger(__name__)

SUITE = "serve"
RATES = (50, 100)
SECONDS = float(os.environ.get("BENCH_SERVE_SECONDS", "10"))
CONCURRENCY = 16
MAX_WORLD_USERS = 10_000
SEED = 11
HOST = "127.0.0.1"
P99_GOAL_MS = 15.0
GOAL_RATE = 100
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


def _requests_for(kind: str, port: int, user_ids: list[int]) -> list[bytes]:
    if kind == "predict":
        return [_raw_request("POST", f"/predict/{u}", port) for u in user_ids]
    if kind == "features":
        return [_raw_request("GET", f"/features/{u}", port) for u in user_ids]
    if kind == "feast":
        return [
            _raw_request(
                "POST",
                "/get-online-features",
                port,
                json.dumps({"feature_service": FEATURE_SERVICE, "entities": {"user_id": [u]}}).encode(),
            )
            for u in user_ids
        ]
    raise ValueError(f"unknown target kind {kind}")


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
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 means saturation")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 120:
        parser.error("--seconds must be in (0, 120]: the load is bounded in time")
    rng = random.Random(SEED)
    user_ids = [rng.randint(1, args.users) for _ in range(5000)]
    requests = _requests_for(args.kind, args.port, user_ids)
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


def drive_measured(
    server_pid: int, port: int, kind: str, users: int, rate: float, seconds: float = SECONDS
) -> dict[str, Any]:
    """``drive``, plus the server's CPU milliseconds per answered request."""
    before = process_tree_cpu_seconds(server_pid)
    result = drive(port, kind, users, rate, seconds)
    used = process_tree_cpu_seconds(server_pid) - before
    result["cpu_ms_per_request"] = used * 1000 / max(result["ok"], 1)
    return result


def drive(port: int, kind: str, users: int, rate: float, seconds: float = SECONDS) -> dict[str, Any]:
    """Run the load generator in its own process (so it never shares a GIL with a server)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.serve",
        "loadgen",
        "--port",
        str(port),
        "--kind",
        kind,
        "--users",
        str(users),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- the world and the servers ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


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


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the serve benchmark needs redis-server (apt-get install redis-server)")
    port = _free_port()
    (workdir / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir / "redis"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    for _ in range(100):
        try:
            redis.Redis(host=HOST, port=port).ping()
            return proc, port
        except redis.RedisError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("private redis-server did not start")


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


def run(workdir: Path, users: int) -> list[Row]:
    """Build the world, start Redis, the API and ``feast serve``, drive them and report."""
    world = _build_world(workdir, users)
    redis_proc, redis_port = _start_redis(workdir)
    api_proc = feast_proc = None
    env = {
        **os.environ,
        "DATA_DIR": str(world.data_dir),
        "REDIS_CONNECTION_STRING": f"{HOST}:{redis_port}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    try:
        from churnfs.settings import Settings
        from churnfs.store import apply_repo, materialize

        settings = Settings(data_dir=world.data_dir, redis_connection_string=f"{HOST}:{redis_port}")
        apply_repo(settings)
        began = time.perf_counter()
        materialize(settings)
        materialize_s = time.perf_counter() - began
        champion = _champion(settings)

        api_port, feast_port = _free_port(), _free_port()
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / "api.log", "wb") as api_log, open(logs / "feast.log", "wb") as feast_log:
            api_proc = subprocess.Popen(
                [sys.executable, "-c", API_SCRIPT],
                cwd=REPO,
                env={**env, "HOST": HOST, "PORT": str(api_port)},
                stdout=api_log,
                stderr=subprocess.STDOUT,
            )
            feast_proc = subprocess.Popen(
                [
                    str(VENV_BIN / "feast"),
                    "-c",
                    str(REPO),
                    "serve",
                    "-h",
                    HOST,
                    "-p",
                    str(feast_port),
                    "--no-access-log",
                    "--max-requests",
                    "0",
                ],
                cwd=REPO,
                env=env,
                stdout=feast_log,
                stderr=subprocess.STDOUT,
            )
            _wait_http(api_port, "/health", 180, api_proc)
            _wait_http(feast_port, "/health", 180, feast_proc)
            targets = {"predict": (api_port, api_proc.pid), "feast": (feast_port, feast_proc.pid)}
            for kind, (port, _) in targets.items():  # warm-up: imports, caches, connections
                drive(port, kind, world.users, rate=50, seconds=2)
            load_before = os.getloadavg()[0]
            results: dict[tuple[str, str], dict[str, Any]] = {}
            for rate in RATES:
                for kind, (port, pid) in targets.items():
                    results[(kind, f"{rate}")] = drive_measured(pid, port, kind, world.users, rate=rate)
            for kind, (port, pid) in targets.items():
                results[(kind, "max")] = drive_measured(pid, port, kind, world.users, rate=0)
            load_after = os.getloadavg()[0]
    finally:
        _stop(api_proc)
        _stop(feast_proc)
        _stop(redis_proc)
    return _rows(world, results, materialize_s, (load_before, load_after), champion)


def _rows(
    world: World,
    results: dict[tuple[str, str], dict[str, Any]],
    materialize_s: float,
    load: tuple[float, float],
    champion: str,
) -> list[Row]:
    names = {"predict": "POST /predict/{user_id}", "feast": "feast serve /get-online-features"}
    rows: list[Row] = [
        Row(
            SUITE,
            "1-min load average before / after the measurements",
            f"{load[0]:.2f} / {load[1]:.2f}",
            "",
            "",
            None,
            f"{os.cpu_count()} cores; the load generator runs on the same machine",
        )
    ]
    note_world = f"{world.users:,} users, champion {champion}" + (
        f", world built in {world.built_seconds:.0f} s" if world.built_seconds else " (reused)"
    )
    for rate in RATES:
        for kind in ("predict", "feast"):
            r = results[(kind, f"{rate}")]
            goal = f"<= {P99_GOAL_MS:g} ms" if kind == "predict" and rate == GOAL_RATE else ""
            ok = (r["p99_ms"] <= P99_GOAL_MS and r["errors"] == 0) if goal else None
            note = (
                f"p50 {r['p50_ms']:.2f} ms, max {r['max_ms']:.1f} ms, {r['ok']}/{r['sent']} ok, "
                f"server CPU {r['cpu_ms_per_request']:.2f} ms per request"
            )
            rows.append(
                Row(SUITE, f"{names[kind]} p99 at {rate} req/s", round(r["p99_ms"], 3), "ms", goal, ok, note)
            )
    for kind in ("predict", "feast"):
        r = results[(kind, "max")]
        note = (
            f"{CONCURRENCY} connections for {r['seconds']:.0f} s: p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, {r['errors']} errors, "
            f"server CPU {r['cpu_ms_per_request']:.2f} ms per request"
        )
        rows.append(
            Row(
                SUITE, f"{names[kind]} max throughput", round(r["throughput_rps"], 1), "req/s", "", None, note
            )
        )
    ratio = results[("predict", "max")]["throughput_rps"] / max(
        results[("feast", "max")]["throughput_rps"], 1e-9
    )
    rows.append(
        Row(
            SUITE,
            "max /predict throughput / max feast serve throughput",
            round(ratio, 3),
            "x",
            ">= 1",
            ratio >= 1,
            note_world,
        )
    )
    rows.append(
        Row(SUITE, "materialize into the bench's Redis", round(materialize_s, 2), "s", "", None, note_world)
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        sys.exit(loadgen_main(sys.argv[2:]))
    logging.basicConfig(level=logging.INFO)
    with __import__("tempfile").TemporaryDirectory(prefix="bench-serve-") as tmp:
        for row in run(Path(tmp), int(os.environ.get("BENCH_USERS", "10000"))):
            print(row)
