"""configure_logging keeps stage progress, results and real problems, and demotes third-party
noise to DEBUG (churnfs -v still shows it)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from churnfs.logs import QUIET_LOGGERS, configure_logging
from churnfs.settings import PROJECT_ROOT

THIRD_PARTY_FILE = "/usr/lib/python3/site-packages/ibis/backends/duckdb/__init__.py"
OWN_FILE = str(PROJECT_ROOT / "transformations" / "job.py")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the root logger, the quieted loggers and warnings back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in [*QUIET_LOGGERS, "mlflow"]}
    mlflow = logging.getLogger("mlflow")
    mlflow_handlers, mlflow_propagate = mlflow.handlers[:], mlflow.propagate
    for name in ("MLFLOW_CONFIGURE_LOGGING", "TRANSFORMERS_VERBOSITY"):
        # setenv first, so monkeypatch restores the variable even if configure_logging sets it.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    with warnings.catch_warnings():
        yield
    root.handlers[:], root.level = handlers, level
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)
    mlflow.handlers[:], mlflow.propagate = mlflow_handlers, mlflow_propagate


def _warn(category: type[Warning], filename: str, message: str = "fetch_arrow_table() is deprecated") -> None:
    warnings.showwarning(category(message), category, filename, 332)


def test_registry_cache_refreshes_are_dropped_but_feast_warnings_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.INFO)
    registry = logging.getLogger("feast.infra.registry.registry")
    registry.info("Registry cache expired, so refreshing")
    registry.warning("registry file is corrupt")
    logging.getLogger("transformations.job").info("profile features (0.2 s)")
    err = capsys.readouterr().err
    assert "Registry cache expired" not in err
    assert "registry file is corrupt" in err
    assert "profile features (0.2 s)" in err


def test_verbose_logging_shows_the_third_party_noise(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.DEBUG)
    logging.getLogger("feast.infra.registry.registry").info("Registry cache expired, so refreshing")
    _warn(DeprecationWarning, THIRD_PARTY_FILE)
    err = capsys.readouterr().err
    assert "Registry cache expired" in err
    assert "DEBUG py.warnings" in err and "fetch_arrow_table() is deprecated" in err


def test_a_library_deprecation_inside_a_library_is_debug_but_ours_are_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.INFO)
    _warn(DeprecationWarning, THIRD_PARTY_FILE)
    _warn(FutureWarning, OWN_FILE, "fillna(method=) is deprecated")
    _warn(RuntimeWarning, THIRD_PARTY_FILE, "overflow encountered in exp")
    err = capsys.readouterr().err
    assert "fetch_arrow_table" not in err
    assert "WARNING py.warnings" in err and "fillna(method=) is deprecated" in err
    assert "overflow encountered in exp" in err


def test_mlflow_logs_go_through_our_handler_and_its_info_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow  # noqa: F401  # importing it installs MLflow's own handler

    configure_logging(logging.INFO)
    mlflow_logger = logging.getLogger("mlflow.pyfunc")
    mlflow_logger.info("Validating input example against model signature")
    mlflow_logger.warning("Found extra inputs in the model input")
    err = capsys.readouterr().err
    assert "Validating input example" not in err
    assert "WARNING mlflow.pyfunc: Found extra inputs in the model input" in err  # our format


def test_a_repeated_library_warning_shows_once_and_ours_every_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.INFO)
    for _ in range(4):
        logging.getLogger("mlflow.models.utils").warning("Found extra inputs: ['user_id']")
        logging.getLogger("serving.online").warning("Redis is down; serving offline")
    logging.getLogger("mlflow.models.utils").error("Found extra inputs: ['user_id']")
    err = capsys.readouterr().err
    assert err.count("WARNING mlflow.models.utils: Found extra inputs") == 1
    assert err.count("ERROR mlflow.models.utils: Found extra inputs") == 1
    assert err.count("Redis is down; serving offline") == 4


def test_the_service_keeps_repeated_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, json_logs=True)
    for _ in range(2):
        logging.getLogger("mlflow.models.utils").warning("Found extra inputs")
    assert capsys.readouterr().err.count('"message": "Found extra inputs"') == 2


def test_third_party_files_are_told_from_ours() -> None:
    from churnfs.logs import is_own_logger, is_third_party_file

    assert is_third_party_file(THIRD_PARTY_FILE)
    assert is_third_party_file(str(PROJECT_ROOT / ".venv" / "lib" / "site-packages" / "feast" / "utils.py"))
    assert not is_third_party_file(OWN_FILE)
    assert is_third_party_file(str(Path("/elsewhere/module.py")))
    assert is_own_logger("serving.access") and is_own_logger("churnfs.store.engine")
    assert not is_own_logger("feast.infra.registry.registry") and not is_own_logger("py.warnings")
