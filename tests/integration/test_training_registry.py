"""The registered model as serving sees it: ``models:/churn-model@champion`` loaded without the
``training`` package, scoring the online store's frames, and the registry's versions and alias."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from churnfs.settings import Settings
from churnfs.tracking import mlflow_session
from training.tracking import CHAMPION_ALIAS, REGISTERED_MODEL

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


def test_registering_again_moves_the_alias_and_keeps_the_previous_version(
    trained_world: Settings, training_set: Any, training_summary: dict[str, Any]
) -> None:
    import mlflow

    from training.train import train_models

    with mlflow_session(trained_world) as client:
        before = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    assert before.tags["model_kind"] == training_summary["best model"]
    # a different kind this time (quick to fit), so the champion visibly changes
    other = "lightgbm" if training_summary["best model"] == "logistic_regression" else "logistic_regression"
    try:
        again = train_models(
            trained_world, show_progress=False, models=[other], max_rounds=100, training_set=training_set
        )
        assert again["previous champion"] == str(before.version)
        assert int(again["registered version"]) == int(before.version) + 1
        with mlflow_session(trained_world) as client:
            now = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
            kept = client.get_model_version(REGISTERED_MODEL, before.version)
            model = mlflow.pyfunc.load_model(CHAMPION_URI)
        assert str(now.version) == again["registered version"]
        assert now.tags["model_kind"] == other
        assert now.tags["previous_champion"] == str(before.version)
        assert kept.tags["model_kind"] == before.tags["model_kind"] and kept.run_id == before.run_id
        assert model._model_impl.spec.model_kind == other
    finally:
        # roll back (move the alias back): other tests expect the session's champion
        with mlflow_session(trained_world) as client:
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, before.version)
            restored = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
            assert str(restored.version) == str(before.version)
