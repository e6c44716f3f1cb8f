"""The one place a Spark session is made from ``Settings``: the feature engine, Feast's Spark
offline store, the tests and the benchmarks all start Spark through here.

Before starting anything it checks what Spark needs and says how to fix what is missing: the
``spark`` extra (PySpark), Java 17, and, for ``spark://`` masters, a master that answers. Spark's
own failure for those is a JVM stack trace or a retry loop of a minute or more.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from churnfs.errors import InvalidInputError, ServiceUnavailableError
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
    # Results of the feature job come back to the driver to be written as the offline store's files.
    "spark.driver.memory": "4g",
    "spark.driver.maxResultSize": "4g",
    "spark.executor.memory": "2g",
    # Workers import the product and load the packaged model; they never reach the network.
    "spark.executorEnv.HF_HUB_OFFLINE": "1",
    "spark.executorEnv.TRANSFORMERS_OFFLINE": "1",
}


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


def check_spark(settings: Settings) -> None:
    """Raise one clear error naming what Spark lacks here: PySpark, Java, or its master."""
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
    for host, port in master_addresses(settings.spark_master):
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError:
            raise ServiceUnavailableError(
                f"the Spark master {settings.spark_master} does not answer at {host}:{port}: start it "
                "($SPARK_HOME/bin/spark-class org.apache.spark.deploy.master.Master) or set "
                "SPARK_MASTER=local[*]"
            ) from None


def spark_session(settings: Settings) -> SparkSession:
    """The process's Spark session for ``settings`` (started on first use, after ``check_spark``).

    A session already running on another master is stopped first: one JVM holds one context."""
    check_spark(settings)
    from pyspark.sql import SparkSession

    conf = spark_conf(settings)
    active = SparkSession.getActiveSession()
    if active is not None:
        if active.sparkContext.master == conf["spark.master"]:
            return active
        active.stop()
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


def stop_spark() -> None:
    """Stop this process's Spark session, if one runs."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
