"""The registered model as serving sees it: ``models:/churn-model@champion`` loaded without the
``training`` package, scoring the online store's frames; the registry's versions and aliases, and
the gate that gives a new model ``@champion`` only if it is not worse on the same test rows."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnfs.settings import Settings
from churnfs.tracking import mlflow_session
from churnfs.world import load_world_spec
from tests.fixtures.training import FAST_MAX_ROUNDS
from training.gate import GATE_TOLERANCE
from training.tracking import CHALLENGER_ALIAS, CHAMPION_ALIAS, REGISTERED_MODEL

pytestmark = pytest.mark.integration

CHAMPION_URI = f"models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS}"

LOAD_WITHOUT_TRAINING = """
import json, sys
sys.modules["training"] = None  # any import of the training package now fails
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_registry_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
example = model.input_example
out = model.predict(example, params={"explain": True})
print(json.dumps({
    "probabilities": out["churn_probability"].tolist(),
    "columns": list(out.columns),
    "rows": len(example),
    "training_modules": sorted(m for m in sys.modules if m.startswith("training") and sys.modules[m]),
    "runtime_module": sys.modules["churn_model_pyfunc"].__file__,
}))
"""


def test_champion_loads_and_scores_in_a_process_that_cannot_import_training(
    trained_world: Settings, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_TRAINING,
            trained_world.resolved_mlflow_tracking_uri,
            CHAMPION_URI,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["training_modules"] == []
    assert "/artifacts/code/" in out["runtime_module"]
    assert len(out["probabilities"]) == out["rows"] > 0
    assert all(0.0 < p < 1.0 for p in out["probabilities"])
    assert out["columns"][0] == "churn_probability"
    assert "contrib__events_30d" in out["columns"] and "contrib__topic_vector" in out["columns"]


def test_champion_scores_online_feature_frames_with_contributions_that_explain_the_score(
    trained_world: Settings, training_set: Any
) -> None:
    import mlflow

    from churnfs.store import get_store

    store = get_store(trained_world)
    users = training_set.frame["user_id"].drop_duplicates().head(40).tolist()
    online = store.get_online_features(
        features=store.get_feature_service("churn_model_v1"), entity_rows=[{"user_id": u} for u in users]
    ).to_df()
    online = online.dropna()  # users who churned before the end have no fresh values
    assert len(online) >= 20
    with mlflow_session(trained_world):
        model = mlflow.pyfunc.load_model(CHAMPION_URI)
    out = model.predict(online, params={"explain": True})
    p = out["churn_probability"].to_numpy()
    assert ((p > 0) & (p < 1)).all() and np.unique(p).size > 1
    contrib = out[[f"contrib__{f}" for f in training_set.feature_names]].to_numpy()
    # contributions are log-odds shares of this score: score minus their sum is one constant (the bias)
    residual = np.log(p / (1 - p)) - contrib.sum(axis=1)
    assert np.ptp(residual) < 1e-4
    np.testing.assert_allclose(model.predict(online)["churn_probability"].to_numpy(), p)


@pytest.fixture
def champion_restored(trained_world: Settings) -> Iterator[Any]:
    """The session's champion version; afterwards ``@champion`` points at it again and
    ``@challenger`` is gone, whatever the test registered."""
    from mlflow.exceptions import MlflowException

    with mlflow_session(trained_world) as client:
        before = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    yield before
    with mlflow_session(trained_world) as client:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, before.version)
        with contextlib.suppress(MlflowException):  # no challenger was registered
            client.delete_registered_model_alias(REGISTERED_MODEL, CHALLENGER_ALIAS)


@pytest.fixture(scope="module")
def noise_training_set(training_set: Any, feast_world: Settings) -> Any:
    """The session's training set with the training period's labels shuffled (validation and test
    labels untouched): a model fitted on it learns noise, so it is clearly worse on the test rows."""
    world = load_world_spec(feast_world.raw_dir)
    frame = training_set.frame.copy()
    train = frame["event_timestamp"].isin(world.train_cutoffs()).to_numpy()
    rng = np.random.default_rng(3)
    frame.loc[train, "churned"] = rng.permutation(frame.loc[train, "churned"].to_numpy())
    return type(training_set)(frame, training_set.features, training_set.feature_service, training_set.checks)


def _champion_test_roc_auc(settings: Settings, version: Any) -> float:
    with mlflow_session(settings) as client:
        return float(client.get_run(version.run_id).data.metrics["test_roc_auc"])


def test_a_retrain_as_good_on_the_test_rows_takes_the_champion_alias_and_keeps_the_previous_version(
    trained_world: Settings,
    training_set: Any,
    training_summary: dict[str, Any],
    champion_restored: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    import training.gate
    from training.train import train_models

    # the champion scores the test rows 333 at a time: its figure still equals its own run's
    monkeypatch.setattr(training.gate, "SCORE_CHUNK_ROWS", 333)
    before = champion_restored
    assert before.tags["model_kind"] == training_summary["best model"]
    again = train_models(
        trained_world,
        show_progress=False,
        models=[training_summary["best model"]],
        max_rounds=FAST_MAX_ROUNDS,
        training_set=training_set,
    )
    # the champion was scored on the same test rows: its figure equals what its own run logged
    champion_auc = again["champion test metrics"]["roc_auc"]
    assert champion_auc == pytest.approx(_champion_test_roc_auc(trained_world, before), abs=1e-12)
    assert again["test metrics"]["roc_auc"] >= champion_auc - GATE_TOLERANCE
    assert again["alias"] == CHAMPION_ALIAS and again["gate"].startswith("not worse than the champion")
    assert again["previous champion"] == str(before.version)
    assert int(again["registered version"]) == int(before.version) + 1
    with mlflow_session(trained_world) as client:
        now = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
        kept = client.get_model_version(REGISTERED_MODEL, before.version)
        model = mlflow.pyfunc.load_model(CHAMPION_URI)
    assert str(now.version) == again["registered version"]
    assert now.tags["previous_champion"] == str(before.version)
    assert now.tags["gate"] == again["gate"]
    assert kept.tags["model_kind"] == before.tags["model_kind"] and kept.run_id == before.run_id
    assert model._model_impl.spec.model_kind == training_summary["best model"]


def test_a_model_worse_on_the_test_rows_becomes_the_challenger_and_the_champion_stays(
    trained_world: Settings, noise_training_set: Any, champion_restored: Any
) -> None:
    from training.train import summary_rows, train_models

    before = champion_restored
    worse = train_models(
        trained_world, show_progress=False, models=["logistic_regression"], training_set=noise_training_set
    )
    champion_auc = worse["champion test metrics"]["roc_auc"]
    assert champion_auc == pytest.approx(_champion_test_roc_auc(trained_world, before), abs=1e-12)
    assert worse["test metrics"]["roc_auc"] < champion_auc - GATE_TOLERANCE
    assert worse["alias"] == CHALLENGER_ALIAS
    assert worse["model uri"] == f"models:/{REGISTERED_MODEL}@{CHALLENGER_ALIAS}"
    rows = summary_rows(worse)  # what `churnfs train` prints
    assert rows["alias"] == "challenger"
    assert rows["gate"].startswith(f"worse than the champion by more than {GATE_TOLERANCE}")
    assert "`churnfs train --promote`" in rows["gate"]
    assert rows[f"test champion v{before.version}"].startswith(f"roc_auc {champion_auc:.4f}")
    with mlflow_session(trained_world) as client:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
        challenger = client.get_model_version_by_alias(REGISTERED_MODEL, CHALLENGER_ALIAS)
    assert str(champion.version) == str(before.version)
    assert str(challenger.version) == worse["registered version"]
    assert challenger.tags["champion_at_registration"] == str(before.version)
    assert challenger.tags["model_kind"] == "logistic_regression"


def test_promote_gives_a_worse_model_the_champion_alias(
    trained_world: Settings, noise_training_set: Any, champion_restored: Any
) -> None:
    from training.train import train_models

    before = champion_restored
    forced = train_models(
        trained_world,
        show_progress=False,
        models=["logistic_regression"],
        training_set=noise_training_set,
        promote=True,
    )
    assert forced["test metrics"]["roc_auc"] < forced["champion test metrics"]["roc_auc"] - GATE_TOLERANCE
    assert forced["alias"] == CHAMPION_ALIAS
    assert forced["gate"].startswith("promoted with --promote")
    assert forced["previous champion"] == str(before.version)
    with mlflow_session(trained_world) as client:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    assert str(champion.version) == forced["registered version"]
    assert champion.tags["model_kind"] == "logistic_regression"


def test_train_command_passes_promote_and_says_which_alias_the_model_got(
    trained_world: Settings, champion_restored: Any
) -> None:
    """Also with ``--max-rows-per-cutoff`` under every training and validation cutoff's rows: those
    cutoffs are sampled to the cap, the test cutoff is scored whole, and the run says so."""
    from typer.testing import CliRunner

    from churnfs.cli import app

    world = load_world_spec(trained_world.raw_dir)
    labels = pd.read_parquet(trained_world.offline_store_dir / "churn_labels.parquet")
    per_cutoff = pd.to_datetime(labels["event_timestamp"], utc=True).value_counts()
    sampled = [*world.train_cutoffs(), *world.validation_cutoffs()]
    rows = {c: int(per_cutoff[pd.Timestamp(c)]) for c in sampled}
    test_rows = {c: int(per_cutoff[pd.Timestamp(c)]) for c in world.test_cutoffs()}
    cap = min(rows.values()) // 2
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--models",
            "logistic_regression",
            "--promote",
            "--max-rows-per-cutoff",
            str(cap),
            "--data-dir",
            str(trained_world.data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    with mlflow_session(trained_world) as client:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
        run = client.get_run(champion.run_id)
    assert int(champion.version) > int(champion_restored.version)
    assert champion.tags["model_kind"] == "logistic_regression"
    assert champion.tags["gate"].startswith("promoted with --promote")
    flat = " ".join(result.output.split())
    assert f"{CHAMPION_URI} is version {champion.version}: promoted with --promote" in flat
    assert run.data.tags["training_sampled"] == champion.tags["training_sampled"] == "yes"
    assert run.data.tags["training_sample_seed"] == "0"
    assert run.data.params["max_rows_per_cutoff"] == str(cap)
    before, after = {**rows, **test_rows}, {**dict.fromkeys(rows, cap), **test_rows}
    assert run.data.params["rows_per_cutoff_before"] == ",".join(
        f"{c:%Y-%m-%d}:{n}" for c, n in before.items()
    )
    assert run.data.params["rows_per_cutoff_after"] == ",".join(f"{c:%Y-%m-%d}:{n}" for c, n in after.items())
    assert run.data.params["train_rows"] == str(cap * len(world.train_cutoffs()))
    assert run.data.metrics["test_rows"] == sum(test_rows.values())  # the test period is never sampled
