"""Training on the small world with real Feast and real MLflow: the point-in-time training set
(validated labels, three periods), its leakage checks (two planted leaks), the four models against
the oracle, the test period scored once for the chosen model, and the MLflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnfs.settings import Settings
from churnfs.world import load_world_spec
from tests.fixtures.transformations import write_hand_made_world
from training.dataset import check_point_in_time, load_entity_frame, load_oracle
from training.design import ServiceFeature
from training.estimators import MODEL_KINDS
from training.evaluation import METRICS
from training.leakage import LeakageError
from training.selection import COMPLEXITY
from training.train import fit_and_evaluate

pytestmark = pytest.mark.integration


def _store(settings: Settings) -> Any:
    from churnfs.store import get_store

    return get_store(settings, check_online=False)


def _all_cutoffs(settings: Settings) -> list[Any]:
    return [c for cutoffs in load_world_spec(settings.raw_dir).periods().values() for c in cutoffs]


def test_training_set_has_one_row_per_validated_label_row_with_the_services_features(
    feast_world: Settings, training_set: Any
) -> None:
    cutoffs = _all_cutoffs(feast_world)
    labels = load_entity_frame(_store(feast_world), cutoffs)
    # the labels are the feature job's validated churn_labels file, row for row
    written = pd.read_parquet(feast_world.offline_store_dir / "churn_labels.parquet")
    written = written[written["event_timestamp"].isin(pd.to_datetime(cutoffs, utc=True))]
    assert len(labels) == len(written)
    assert set(zip(labels["user_id"], labels["event_timestamp"], labels["churned"], strict=True)) == set(
        zip(written["user_id"], written["event_timestamp"], written["churned"], strict=True)
    )
    frame = training_set.frame
    pd.testing.assert_frame_equal(
        frame[["user_id", "event_timestamp", "churned"]].reset_index(drop=True), labels, check_dtype=False
    )
    assert set(frame["event_timestamp"]) == set(cutoffs)
    names = training_set.feature_names
    assert "review_embedding" not in names
    assert {"events_30d", "categorical_event_vector", "topic_vector", "sentiment_score", "country"} <= set(
        names
    )
    assert len(names) == len(set(names))


def test_a_cutoff_joined_in_slices_of_users_gives_the_rows_of_one_join(
    feast_world: Settings, training_set: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``RETRIEVAL_CHUNK_ROWS`` label rows a cutoff is joined in several calls: here 400
    rows a call (every cutoff of the small world needs several), the same frame as the session's
    training set, whose cutoffs were each joined at once."""
    import training.dataset
    from training.dataset import FEATURE_SERVICE, retrieve_features

    store = _store(feast_world)
    entities = load_entity_frame(store, _all_cutoffs(feast_world))
    assert entities["event_timestamp"].value_counts().min() > 2 * 400
    monkeypatch.setattr(training.dataset, "RETRIEVAL_CHUNK_ROWS", 400)
    sliced = retrieve_features(store, entities, store.get_feature_service(FEATURE_SERVICE))
    pd.testing.assert_frame_equal(sliced, training_set.frame)


def test_labels_come_from_the_churn_labels_view_not_the_raw_target_table(
    redis_connection_string: str, tmp_path: Path
) -> None:
    """The hand-made world's target_table has a row for an unknown user (99), which the feature
    job quarantines; training reads the labels behind Feast's churn_labels view, so it never
    sees that row."""
    from churnfs.store import apply_repo
    from transformations.job import build_features

    settings = write_hand_made_world(tmp_path / "world").model_copy(
        update={"redis_connection_string": redis_connection_string}
    )
    build_features(settings, groups=["labels"], show_progress=False)
    apply_repo(settings)
    raw = pd.read_parquet(settings.raw_dir / "target_table.parquet")
    labels = load_entity_frame(_store(settings), sorted(set(raw["event_timestamp"])))
    assert 99 in set(raw["user_id"]) and 99 not in set(labels["user_id"])
    assert labels[["user_id", "churned"]].values.tolist() == [
        [1, 0],
        [1, 0],
        [2, 0],
        [2, 1],
        [3, 1],
        [3, 1],
        [4, 0],
    ]
    assert (labels["event_timestamp"].dt.tz is not None) and len(labels) == len(raw) - 1


def test_every_joined_row_comes_from_a_snapshot_as_of_its_cutoff_or_earlier(
    feast_world: Settings, training_set: Any
) -> None:
    checks = {c.view: c for c in training_set.checks}
    assert set(checks) == {"user_profile_features", "user_activity_features", "user_review_features"}
    times = training_set.snapshot_times
    cutoff = training_set.frame["event_timestamp"]
    for view, check in checks.items():
        assert check.rows == len(training_set.frame)
        known = times[view].notna()
        assert known.sum() == check.rows - check.rows_without_values
        assert (pd.to_datetime(times.loc[known, view], utc=True) <= cutoff[known]).all()
        assert 0.0 <= check.max_age_days <= 30.0

    # and by hand for one row: Feast's values are the offline file's row as of that cutoff
    row = training_set.frame.iloc[len(training_set.frame) // 2]
    activity = pq.read_table(
        feast_world.offline_store_dir / "user_activity_features.parquet",
        filters=[("user_id", "=", int(row["user_id"]))],
    ).to_pandas()
    activity["event_timestamp"] = pd.to_datetime(activity["event_timestamp"], utc=True)
    as_of = (
        activity[activity["event_timestamp"] <= row["event_timestamp"]]
        .sort_values("event_timestamp")
        .iloc[-1]
    )
    for name in ("events_30d", "last_active_days", "activity_trend", "total_spend"):
        assert row[name] == as_of[name]
    np.testing.assert_array_equal(
        np.asarray(row["categorical_event_vector"]), as_of["categorical_event_vector"]
    )


def test_values_of_a_later_snapshot_planted_in_the_join_are_rejected(
    feast_world: Settings, training_set: Any
) -> None:
    """Planted leak 1: some rows carry the activity snapshot as of four weeks after their cutoff
    (a join that reads the future). The trace back to the offline files rejects the set."""
    frame = training_set.frame.copy()
    activity = pq.read_table(feast_world.offline_store_dir / "user_activity_features.parquet").to_pandas()
    activity["event_timestamp"] = pd.to_datetime(activity["event_timestamp"], utc=True)
    first_cutoff = frame["event_timestamp"].min()
    later = activity[activity["event_timestamp"] == first_cutoff + pd.Timedelta(days=28)].set_index("user_id")
    victims = frame.index[(frame["event_timestamp"] == first_cutoff) & frame["user_id"].isin(later.index)][
        :25
    ]
    scalars = [
        f.name for f in training_set.features if f.view == "user_activity_features" and f.kind != "vector"
    ]
    changed = 0
    for i in victims:
        future = later.loc[frame.at[i, "user_id"], scalars]
        changed += int((frame.loc[i, scalars].astype(float) != future.astype(float)).any())
        frame.loc[i, scalars] = future.to_numpy()
    assert changed > 0  # the planted rows really differ from the honest ones
    with pytest.raises(
        LeakageError, match="user_activity_features carry values first known after their cutoff"
    ):
        check_point_in_time(_store(feast_world), frame, training_set.features)


def test_a_feature_read_at_extraction_time_is_exposed_by_validation(
    feast_world: Settings, training_set: Any, tmp_path: Path
) -> None:
    """Planted leak 2: an ``account_closed`` flag read from today's CRM state instead of as of
    the cutoff (timestamps look fine, values come from the label window). On its own it predicts
    validation churn better than the generator's true probability, which no honest feature can."""
    world = load_world_spec(feast_world.raw_dir)
    target = pq.read_table(feast_world.raw_dir / "target_table.parquet").to_pandas()
    closed_by_now = set(target.loc[target["churned"] == 1, "user_id"])
    leaky = training_set.frame.assign(account_closed=training_set.frame["user_id"].isin(closed_by_now))
    leaky_set = type(training_set)(
        frame=leaky,
        features=[*training_set.features, ServiceFeature("crm_status", "account_closed", "Bool")],
        feature_service=training_set.feature_service,
    )
    with pytest.raises(LeakageError, match=r"account_closed \(ROC-AUC 0\.9\d\d\)"):
        fit_and_evaluate(
            leaky_set,
            load_oracle(feast_world.raw_dir),
            world.train_cutoffs(),
            world.validation_cutoffs(),
            ["lightgbm"],
            tmp_path,
            max_rounds=50,
        )
    assert not any(tmp_path.iterdir())  # rejected before any model was fitted or saved


def test_summary_scores_every_model_and_the_oracle_on_the_validation_period(
    training_summary: dict[str, Any], training_set: Any, feast_world: Settings
) -> None:
    world = load_world_spec(feast_world.raw_dir)
    valid_rows = training_set.frame["event_timestamp"].isin(world.validation_cutoffs()).sum()
    assert training_summary["validation rows"] == valid_rows
    assert training_summary["rows"] == len(training_set.frame)
    metrics = training_summary["metrics"]
    assert set(metrics) == set(MODEL_KINDS)
    oracle = training_summary["oracle"]
    for values in [*metrics.values(), oracle]:
        assert set(values) == set(METRICS)
        assert 0.5 < values["roc_auc"] <= 1.0
        assert 0.0 < values["brier"] < 0.25
        assert values["lift_top_decile"] > 1.0
    # the oracle is the ceiling (within the leak guard's margin)
    assert max(m["roc_auc"] for m in metrics.values()) <= oracle["roc_auc"] + 0.02
    best = training_summary["best model"]
    # the simplest model within one bootstrap standard error of the best validation PR-AUC
    top = max(metrics, key=lambda kind: metrics[kind]["pr_auc"])
    assert f"best validation PR-AUC {top} {metrics[top]['pr_auc']:.4f}" in training_summary["selection"]
    standard_error = training_summary["selection standard error"]
    assert metrics[top]["pr_auc"] - metrics[best]["pr_auc"] <= standard_error + 1e-4
    simpler = [k for k in metrics if COMPLEXITY.get(k, 1) < COMPLEXITY.get(best, 1)]
    assert all(metrics[top]["pr_auc"] - metrics[k]["pr_auc"] > standard_error - 1e-4 for k in simpler)
    share = metrics[best]["roc_auc"] / oracle["roc_auc"]
    assert training_summary["validation roc_auc share of oracle"] == pytest.approx(share, abs=1e-4)
    print("validation metrics:", {k: round(v["roc_auc"], 4) for k, v in metrics.items()}, "oracle", oracle)


def test_the_chosen_model_and_the_oracle_are_scored_on_the_test_rows_once_at_the_end(
    training_summary: dict[str, Any], training_set: Any, feast_world: Settings
) -> None:
    world = load_world_spec(feast_world.raw_dir)
    test_rows = training_set.rows_at(world.test_cutoffs())
    assert training_summary["test rows"] == len(test_rows) > 0
    assert training_summary["train rows"] + training_summary["validation rows"] + len(test_rows) == len(
        training_set.frame
    )
    test, oracle = training_summary["test metrics"], training_summary["test oracle"]
    assert set(test) == set(oracle) == set(METRICS)
    assert 0.5 < test["roc_auc"] <= oracle["roc_auc"] + 0.02
    assert 0.0 < test["brier"] < 0.25
    # the oracle's figures are its own on these rows, not the validation period's
    labels = test_rows["churned"].to_numpy()
    truth = test_rows[["user_id", "event_timestamp"]].merge(load_oracle(feast_world.raw_dir), how="left")
    from training.evaluation import classification_metrics

    expected = classification_metrics(labels, truth["churn_probability"].to_numpy())
    assert oracle == pytest.approx(expected)
    assert training_summary["test roc_auc share of oracle"] == pytest.approx(
        test["roc_auc"] / oracle["roc_auc"], abs=1e-4
    )
    # the session's first training had no champion to beat
    assert training_summary["alias"] == "champion" and training_summary["previous champion"] is None
    print("test:", {k: round(v, 4) for k, v in test.items()}, "oracle", oracle)


def test_test_period_labels_change_nothing_in_fitting_or_model_choice(
    feast_world: Settings, training_set: Any, tmp_path: Path
) -> None:
    """Nothing is tuned on the test period: flipping every test label leaves the fitted models,
    their validation metrics and the choice exactly as they were."""
    world = load_world_spec(feast_world.raw_dir)
    is_test = training_set.frame["event_timestamp"].isin(world.test_cutoffs())
    flipped = training_set.frame.assign(
        churned=training_set.frame["churned"].where(~is_test, 1 - training_set.frame["churned"])
    )
    assert (flipped["churned"] != training_set.frame["churned"]).sum() == is_test.sum() > 0
    runs = {}
    for name, frame in (("honest", training_set.frame), ("flipped", flipped)):
        same_features = type(training_set)(frame, training_set.features, training_set.feature_service)
        evaluation = fit_and_evaluate(
            same_features,
            load_oracle(feast_world.raw_dir),
            world.train_cutoffs(),
            world.validation_cutoffs(),
            ["logistic_regression", "lightgbm"],
            tmp_path / name,
            max_rounds=40,
        )
        runs[name] = evaluation
    honest, flipped_run = runs["honest"], runs["flipped"]
    assert honest.choose() == flipped_run.choose()
    for kind, result in honest.results.items():
        assert flipped_run.results[kind].metrics == result.metrics
        np.testing.assert_array_equal(flipped_run.results[kind].scores, result.scores)


def test_each_model_has_an_mlflow_run_with_params_metrics_tags_and_plots_under_data_dir(
    trained_world: Settings, training_summary: dict[str, Any]
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(trained_world.resolved_mlflow_tracking_uri)
    runs = training_summary["runs"]
    assert set(runs) == set(MODEL_KINDS)
    data_dir = trained_world.data_dir.resolve()
    for kind, run_id in runs.items():
        run = client.get_run(run_id)
        assert run.data.tags["feature_service"] == "churn_model_v1"
        assert run.data.tags["feature_service_version"] == "1"
        assert run.data.tags["world_seed"] == "7"
        assert len(run.data.tags["data_snapshot"]) == 16
        assert run.data.tags["git_commit"] != ""
        # the session's training set was built without a cap: every label row, and the run says so
        assert run.data.tags["training_sampled"] == "no"
        assert run.data.params["max_rows_per_cutoff"] == "0"
        assert run.data.params["rows_per_cutoff_before"] == run.data.params["rows_per_cutoff_after"]
        assert run.data.params["model_kind"] == kind
        assert run.data.metrics["val_roc_auc"] == pytest.approx(training_summary["metrics"][kind]["roc_auc"])
        assert run.data.metrics["oracle_val_roc_auc"] == pytest.approx(training_summary["oracle"]["roc_auc"])
        test_metrics = {k for k in run.data.metrics if k.startswith(("test_", "oracle_test_"))}
        if kind != training_summary["best model"]:
            assert test_metrics == set()  # only the chosen model is scored on the test period
            continue
        for name in ("roc_auc", "pr_auc", "brier"):
            assert run.data.metrics[f"test_{name}"] == pytest.approx(training_summary["test metrics"][name])
            assert run.data.metrics[f"oracle_test_{name}"] == pytest.approx(
                training_summary["test oracle"][name]
            )
        assert run.data.metrics["test_rows"] == training_summary["test rows"]
        assert run.data.params["test_cutoffs"] == ",".join(
            f"{c:%Y-%m-%d}" for c in load_world_spec(trained_world.raw_dir).test_cutoffs()
        )
        assert run.data.tags["registered_alias"] == "champion"
        plots = {a.path for a in client.list_artifacts(run_id, "plots")}
        assert plots == {
            "plots/roc.png",
            "plots/pr.png",
            "plots/calibration.png",
            "plots/feature_importance.png",
        }
        assert Path(run.info.artifact_uri.removeprefix("file://")).resolve().is_relative_to(data_dir)
    models = client.search_logged_models(experiment_ids=[client.get_run(runs["lightgbm"]).info.experiment_id])
    assert models and all(
        Path(m.artifact_location.removeprefix("file://")).resolve().is_relative_to(data_dir) for m in models
    )
