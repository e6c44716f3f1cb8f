"""MLflow tracking and registry for the churn models.

The tracking URI comes from Settings (embedded SQLite under ``DATA_DIR`` by default) and is set
only for the duration of a training call (``mlflow_session``), never at import. The experiment's
artifacts live under ``DATA_DIR/mlruns`` when the store is local, never in the working directory.
Each model is logged as an MLflow pyfunc whose code is ``churn_model_pyfunc.py`` alone
(``code_paths``), so loading it needs MLflow and the model's library, not this package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnfs.errors import ServiceUnavailableError
from churnfs.settings import PROJECT_ROOT, Settings
from training import churn_model_pyfunc
from training.churn_model_pyfunc import PROBABILITY_COLUMN, FeatureSpec

logger = logging.getLogger(__name__)

EXPERIMENT = "churn-model"
REGISTERED_MODEL = "churn-model"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
MODEL_ARTIFACT = "model"
LOADER_MODULE = "churn_model_pyfunc"

_MLFLOW_TYPES = {"int": "long", "float": "double", "bool": "boolean", "string": "string"}
_KIND_PACKAGES = {
    "logistic_regression": ["scikit-learn", "joblib"],
    "lightgbm": ["lightgbm"],
    "xgboost": ["xgboost"],
    "catboost": ["catboost"],
}


def artifact_location(settings: Settings) -> str | None:
    """``DATA_DIR/mlruns`` for a local tracking store; a tracking server chooses its own."""
    uri = settings.resolved_mlflow_tracking_uri
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return (settings.data_dir / "mlruns").resolve().as_uri()
    return None


def ensure_experiment(client: Any, settings: Settings, name: str = EXPERIMENT) -> str:
    """The experiment's id, creating it (artifacts under DATA_DIR) on first use."""
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        return str(client.create_experiment(name, artifact_location=artifact_location(settings)))
    except Exception as exc:  # MLflow raises several types for an unreachable store
        if "mlflow" in type(exc).__module__ or isinstance(exc, OSError):
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ServiceUnavailableError(
                f"MLflow tracking at {settings.resolved_mlflow_tracking_uri} failed: {reason} "
                "(check MLFLOW_TRACKING_URI)"
            ) from None
        raise


def git_commit(repo: Path = PROJECT_ROOT) -> str:
    """The checked-out commit (``+dirty`` with uncommitted changes), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def data_snapshot(files: Mapping[str, Path], world: Mapping[str, Any]) -> str:
    """A short fingerprint of the data a model was trained on: the world's identity (users,
    seed, drift) and each offline file's name, size and modification time."""
    digest = hashlib.sha256(json.dumps(dict(world), sort_keys=True, default=str).encode())
    for name in sorted(files):
        stat = Path(files[name]).stat()
        digest.update(f"{name}:{Path(files[name]).name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def model_signature(spec: FeatureSpec) -> Any:
    """Input: the feature service's columns with Feast's types (vectors as arrays of doubles);
    output: ``churn_probability``; parameter ``explain`` (default false)."""
    from mlflow.models import ModelSignature
    from mlflow.types import DataType
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    columns: list[ColSpec | TensorSpec] = []
    for feature in spec.inputs:
        if feature.kind == "vector":
            columns.append(ColSpec(Array(DataType.double), feature.name))
        else:
            columns.append(ColSpec(DataType[_MLFLOW_TYPES[feature.kind]], feature.name))
    return ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([ColSpec(DataType.double, PROBABILITY_COLUMN)]),
        params=ParamSchema([ParamSpec("explain", DataType.boolean, False)]),
    )


def input_example(frame: pd.DataFrame, spec: FeatureSpec, rows: int = 3) -> pd.DataFrame:
    """A few complete rows as ``get_online_features(...).to_df()`` gives them (vectors as lists)."""
    names = spec.feature_names
    complete = frame[names].dropna()
    example = complete.head(rows).reset_index(drop=True).copy()
    for feature in spec.inputs:
        column = example[feature.name]
        if feature.kind == "vector":
            example[feature.name] = [[float(v) for v in np.asarray(x)] for x in column]
        elif feature.kind == "int":
            example[feature.name] = column.astype(np.int64)
        elif feature.kind == "float":
            example[feature.name] = column.astype(np.float64)
        elif feature.kind == "bool":
            example[feature.name] = column.astype(bool)
        else:
            example[feature.name] = column.astype(object)
    return example


def pip_requirements(kind: str) -> list[str]:
    """Pinned requirements of a model of ``kind`` (what serving needs to load it)."""
    packages = ["mlflow", "numpy", "pandas", *_KIND_PACKAGES[kind]]
    return [f"{p}=={importlib.metadata.version(p)}" for p in packages]


def log_churn_model(model_dir: Path, spec: FeatureSpec, example: pd.DataFrame) -> Any:
    """Log the saved model directory as an MLflow pyfunc in the active run; returns ModelInfo."""
    import mlflow

    code_file = Path(churn_model_pyfunc.__file__)
    with tempfile.TemporaryDirectory(prefix="churn-model-code-") as tmp:
        # shipped as top-level ``churn_model_pyfunc``: the loader must not import ``training``
        shipped = Path(tmp) / f"{LOADER_MODULE}.py"
        shipped.write_bytes(code_file.read_bytes())
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            loader_module=LOADER_MODULE,
            data_path=str(model_dir),
            code_paths=[str(shipped)],
            signature=model_signature(spec),
            input_example=example,
            pip_requirements=pip_requirements(spec.model_kind),
        )


@dataclass(frozen=True)
class Registration:
    """A newly registered version and the alias it got."""

    name: str
    version: str
    alias: str
    previous_version: str | None
    """The champion when the new version was registered."""


def champion_version(client: Any, name: str = REGISTERED_MODEL, alias: str = CHAMPION_ALIAS) -> Any | None:
    """The model version (MLflow's ``ModelVersion``) the alias points at now, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def current_champion(client: Any, name: str = REGISTERED_MODEL, alias: str = CHAMPION_ALIAS) -> str | None:
    """The version number the alias points at now, or None."""
    version = champion_version(client, name, alias)
    return None if version is None else str(version.version)


def register_version(
    client: Any,
    model_uri: str,
    tags: Mapping[str, str],
    alias: str = CHAMPION_ALIAS,
    name: str = REGISTERED_MODEL,
) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` and point ``alias`` (``champion`` or
    ``challenger``) at it. Earlier versions stay registered (a rollback is moving the alias back)."""
    import mlflow

    previous = current_champion(client, name)
    version = mlflow.register_model(model_uri, name, tags=dict(tags))
    if previous is not None:
        tag = "previous_champion" if alias == CHAMPION_ALIAS else "champion_at_registration"
        client.set_model_version_tag(name, version.version, tag, previous)
    client.set_registered_model_alias(name, alias, version.version)
    logger.info("registered %s version %s as @%s (champion was %s)", name, version.version, alias, previous)
    return Registration(name=name, version=str(version.version), alias=alias, previous_version=previous)
