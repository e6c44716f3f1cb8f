"""The one place a Spark session is made from ``Settings``: the feature engine, Feast's Spark
offline store, the tests and the benchmarks all start Spark through here.

Before starting anything it checks what Spark needs and says how to fix what is missing: the
``spark`` extra (PySpark), Java 17, and, for ``spark://`` masters, a master that answers. Spark's
own failure for those is a JVM stack trace or a retry loop of a minute or more.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from churnfs.errors import ChurnFSError, InvalidInputError, ServiceUnavailableError
from churnfs.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
"""Spark's JVM logging: warnings and errors only."""
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",  # timestamps cross the Arrow boundary as UTC instants
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "WARN",
    # Spark's default of 200 shuffle partitions is for big clusters: each costs a task, and a
    # point-in-time join of a few thousand rows took 35 s with it (the feature job sets its own).
    "spark.sql.shuffle.partitions": "16",
    # Results of the feature job come back to the driver to be written as the offline store's files.
    "spark.driver.memory": "4g",
    "spark.driver.maxResultSize": "4g",
    "spark.executor.memory": "2g",
    # Workers import the product and load the packaged model; they never reach the network.
    "spark.executorEnv.HF_HUB_OFFLINE": "1",
    "spark.executorEnv.TRANSFORMERS_OFFLINE": "1",
}


_session: SparkSession | None = None
"""The session this process started (one JVM holds one Spark context)."""
_session_lock = threading.Lock()


def java_executable() -> str | None:
    """The ``java`` Spark will run: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def read_conf_file(path: Path) -> dict[str, str]:
    """A ``spark-defaults.conf`` style file: ``key value`` (or ``key=value``) lines, ``#`` comments."""
    if not path.is_file():
        raise InvalidInputError(f"SPARK_CONF_FILE {path} does not exist")
    conf: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.replace("=", " ", 1).partition(" ")
        if not sep or not key.startswith("spark."):
            raise InvalidInputError(
                f"SPARK_CONF_FILE {path}:{number}: expected 'spark.key value', got {raw!r}"
            )
        conf[key] = value.strip()
    return conf


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting of a session for ``settings``: the defaults above, then
    ``SPARK_CONF_FILE``, then ``SPARK_CONF``, then the master (``SPARK_MASTER``)."""
    conf = dict(DEFAULT_CONF)
    conf["spark.pyspark.python"] = conf["spark.pyspark.driver.python"] = sys.executable
    log4j = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
    conf["spark.driver.extraJavaOptions"] = conf["spark.executor.extraJavaOptions"] = log4j
    if settings.spark_conf_file is not None:
        conf.update(read_conf_file(settings.spark_conf_file))
    conf.update(settings.spark_conf)
    conf["spark.master"] = settings.spark_master
    return conf


def master_addresses(master: str) -> list[tuple[str, int]]:
    """(host, port) of each master of a ``spark://h1:p1,h2:p2`` URL; [] for ``local[...]``."""
    if master.startswith("local"):
        return []
    if not master.startswith("spark://"):
        raise InvalidInputError(f"SPARK_MASTER={master!r}: use local[N], local[*] or spark://host:port")
    addresses = []
    for node in master.removeprefix("spark://").split(","):
        parts = urlsplit(f"//{node}")
        if parts.hostname is None:
            raise InvalidInputError(f"SPARK_MASTER={master!r}: {node!r} is not host:port")
        addresses.append((parts.hostname, parts.port or 7077))
    return addresses


def check_spark(master: str) -> None:
    """Raise one clear error naming what Spark lacks here: PySpark, Java, or the ``master``."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ServiceUnavailableError(
            "Spark is not installed: install the spark extra (pip install -e '.[spark]', or make setup)"
        ) from None
    if java_executable() is None:
        raise ServiceUnavailableError(
            "Spark needs Java 17, and there is no java on PATH and no JAVA_HOME: install it "
            "(apt-get install openjdk-17-jre-headless) or set FEATURE_ENGINE=duckdb"
        )
    for host, port in master_addresses(master):
        if not _answers(host, port, timeout=3):
            raise ServiceUnavailableError(
                f"the Spark master {master} does not answer at {host}:{port}: start it "
                "($SPARK_HOME/bin/spark-class org.apache.spark.deploy.master.Master) or set "
                "SPARK_MASTER=local[*]"
            )


def spark_session(settings: Settings) -> SparkSession:
    """The process's Spark session for ``settings`` (started on first use, after ``check_spark``)."""
    return start_session(spark_conf(settings))


def start_session(conf: dict[str, str]) -> SparkSession:
    """The process's Spark session with ``conf`` (``spark_conf``), started on first use after
    ``check_spark``. A session already running on another master is stopped first: one JVM holds
    one context."""
    check_spark(conf.get("spark.master", "local[*]"))
    global _session
    with _session_lock:
        if _session is not None:
            if _session.sparkContext.master == conf["spark.master"]:
                return _session
            _session.stop()
        _session = None
        _session = _build_session(conf)
        return _session


def _build_session(conf: dict[str, str]) -> SparkSession:
    from pyspark.sql import SparkSession

    # PySpark starts its Python workers with PYSPARK_PYTHON (read when the context starts; the
    # spark.pyspark.python setting covers spark-submit only): this venv's Python, unless set.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if all(host in ("127.0.0.1", "localhost") for host, _ in master_addresses(conf["spark.master"])):
        # A master on this machine (or local[N]): bind to loopback, not the first interface found.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName("churnfs")
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


class SparkJobError(ChurnFSError):
    """A Spark job failed (a task raised, or an executor was lost); the message names the cause."""


def job_failure(exc: Exception) -> SparkJobError:
    """One line for a failed Spark job: the last line of the task's Python error, or Spark's."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    python_errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    cause = (python_errors or lines or [type(exc).__name__])[-1]
    return SparkJobError(f"the Spark job failed: {cause[:500]}")


@dataclass
class StandaloneCluster:
    """A Spark standalone master and one worker on this machine, as separate processes (tests and
    benchmarks; ``start_standalone_cluster``)."""

    master_url: str
    web_url: str
    processes: list[subprocess.Popen[bytes]]
    folder: Path

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def spark_home() -> Path:
    """The PySpark package folder: Spark's launcher scripts and jars are in it."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def start_standalone_cluster(
    folder: Path, cores: int = 2, memory: str = "3g", timeout_s: float = 90
) -> StandaloneCluster:
    """Start ``spark-class org.apache.spark.deploy.master.Master`` and one ``...worker.Worker``
    on 127.0.0.1 free ports (logs and the worker's folder under ``folder``); return once the
    master reports the worker alive."""
    from churnfs.store.redis_servers import free_port

    if java_executable() is None:
        raise ServiceUnavailableError("a Spark standalone cluster needs Java 17: install it")
    folder.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    port, web, worker_web = free_port(), free_port(), free_port()
    master_url, web_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}"
    spark_class = str(home / "bin" / "spark-class")
    commands = [
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(web)],
        [spark_class, "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
         "--cores", str(cores), "--memory", memory, "--webui-port", str(worker_web),
         "--work-dir", str(folder / "work")],
    ]  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    cluster = StandaloneCluster(master_url, web_url, processes, folder)
    try:
        for name, command in zip(("master", "worker"), commands, strict=True):
            log = (folder / f"{name}.log").open("wb")
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            if name == "master":
                _wait_for(lambda: _answers("127.0.0.1", port), timeout_s, f"the Spark master on port {port}")
        _wait_for(lambda: _alive_workers(web_url) >= 1, timeout_s, "a Spark worker to register")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does anything accept a TCP connection at host:port?"""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _alive_workers(web_url: str) -> int:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{web_url}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def _wait_for(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.5)


def stop_spark() -> None:
    """Stop this process's Spark session, if one runs."""
    global _session
    with _session_lock:
        if _session is not None:
            _session.stop()
        _session = None
