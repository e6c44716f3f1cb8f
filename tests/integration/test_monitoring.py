"""Monitoring on the small generated worlds, with a real champion: the planted drift of the
drift world is found and named, a world generated without drift and run like the demo raises no
alarm, the champion's predicted churn moves when the users it scores go quiet and not between two
halves of one period, and bad inputs give one clear error.

The monitored world links the shared small world's raw tables and offline store into its own
DATA_DIR (and reads the shared world's MLflow store), so the prediction log and reports written
here touch no other test's files.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnfs.errors import MissingDataError, SchemaError
from churnfs.settings import Settings
from churnfs.world import load_world_spec
from monitoring import DRIFT_EXIT_CODE, run_monitoring
from monitoring.config import MonitoringConfig
from monitoring.job import WindowData, compare_windows
from monitoring.windows import ACTIVITY_FILE, load_reviews, load_snapshots, resolve_window, split_by_user

pytestmark = pytest.mark.integration

UNMOVED = ("age", "gender", "country", "income", "premium")
"""Profile features the generator's drift does not touch."""


def linked_world(
    source: Settings, root: Path, *, with_offline_store: bool = True, with_models: bool = False
) -> Settings:
    """A DATA_DIR of its own over ``source``'s raw tables and offline store (and, ``with_models``,
    its MLflow store, so the champion is ``source``'s, and its artifacts: the topic model with its
    labels and the embedding cache)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "raw").symlink_to(source.raw_dir)
    if with_offline_store:
        (root / "offline_store").symlink_to(source.offline_store_dir)
    if with_models:
        (root / "artifacts").symlink_to(source.artifacts_dir)
        return Settings(data_dir=root, mlflow_tracking_uri=source.resolved_mlflow_tracking_uri)
    return Settings(data_dir=root)


def write_standin_prediction_log(settings: Settings) -> int:
    """A prediction log in the documented format for the newest snapshot's active users.

    STAND-IN SCORES: no trained model is involved. Each 'churn_probability' is a fixed logistic
    function of the user's activity features, so the log has the right shape and plausible
    values. Monitoring only summarises the log: output drift compares the champion's own scores
    of both windows (the no-drift world below writes its log the demo's way, over HTTP)."""
    activity = pd.read_parquet(settings.offline_store_dir / ACTIVITY_FILE)
    latest = activity[
        (activity["event_timestamp"] == activity["event_timestamp"].max()) & (activity["events_30d"] > 0)
    ]
    score = 1 / (1 + np.exp(-(0.05 * latest["last_active_days"] - 0.1 * latest["events_30d"] + 1.0)))
    now = datetime.now(UTC)
    lines = [
        json.dumps(
            {
                "logged_at": now.isoformat(),
                "request_id": "standin",
                "user_id": int(user),
                "model_name": "churn-model",
                "model_version": "standin",
                "feature_service": "churn_model_v1",
                "source": "offline",
                "churn_probability": float(p),
                "risk_band": "high" if p > 0.5 else "low",
                "features": {},
            }
        )
        for user, p in zip(latest["user_id"], score, strict=True)
    ]
    settings.prediction_log_dir.mkdir(parents=True, exist_ok=True)
    (settings.prediction_log_dir / f"predictions-{now:%Y-%m-%d}.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.fixture(scope="module")
def monitored_world(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = linked_world(trained_world, tmp_path_factory.mktemp("monitoring") / "world", with_models=True)
    write_standin_prediction_log(settings)
    return settings


def _other_redis_db(connection: str) -> str:
    """The same Redis, the next database (flushed): the shared small world's keys stay intact."""
    import redis

    host_port, _, rest = connection.partition(",")
    options = dict(p.split("=", 1) for p in rest.split(",") if p)
    options["db"] = str(int(options.get("db", "0")) + 1)
    host, _, port = host_port.partition(":")
    redis.Redis(
        host=host, port=int(port or 6379), db=int(options["db"]), password=options.get("password")
    ).flushdb()
    return ",".join([host_port, *(f"{k}={v}" for k, v in options.items())])


@pytest.fixture(scope="module")
def no_drift_run(redis_connection_string: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A world generated without drift, taken through the demo's steps (features, apply,
    materialize, train, smoke over HTTP) and monitored with the defaults."""
    from churnfs.store import apply_repo, materialize
    from datagen import generate_world
    from serving.smoke import run_smoke
    from tests.conftest import SMALL_SEED, SMALL_USERS
    from tests.fixtures.training import FAST_MAX_ROUNDS
    from training.train import train_models
    from transformations.job import build_features

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("no-drift-world"),
        redis_connection_string=_other_redis_db(redis_connection_string),
    )
    generate_world(settings, users=SMALL_USERS, seed=SMALL_SEED, drift=False, show_progress=False)
    build_features(settings, show_progress=False)
    apply_repo(settings)
    materialize(settings)
    train_models(settings, show_progress=False, max_rounds=FAST_MAX_ROUNDS)
    run_smoke(settings)
    return run_monitoring(settings, show_progress=False)


@pytest.fixture(scope="module")
def drift_run(monitored_world: Settings) -> Any:
    return run_monitoring(monitored_world, show_progress=False)


def test_planted_device_mix_and_review_sentiment_drift_is_detected_and_named(drift_run: Any) -> None:
    summary = drift_run.summary
    assert drift_run.exit_code == DRIFT_EXIT_CODE, summary["headline"]
    columns = {c["column"]: c for c in summary["features"]["columns"]}
    # The new Android app lifts the mobile share of the last 30 days' events.
    assert "mobile_share_30d" in summary["features"]["drifted"]
    assert columns["mobile_share_30d"]["current_mean"] > columns["mobile_share_30d"]["reference_mean"] + 0.05
    # The delivery problem sours the reviews written in the drift period: the recent reviewers'
    # features, the review texts and their embeddings.
    assert "recent_sentiment" in summary["features"]["drifted"]
    assert columns["recent_sentiment"]["current_mean"] < columns["recent_sentiment"]["reference_mean"]
    reviews = summary["reviews"]
    assert reviews["embedding"]["drifted"]
    assert any(a.startswith("review sentiment drifted") for a in summary["alerts"]), summary["alerts"]
    sentiment = {d["column"]: d for d in reviews["descriptors"]}["review_sentiment"]
    assert sentiment["drifted"]
    assert reviews["current_sentiment"]["mean"] < reviews["reference_sentiment"]["mean"] - 0.2
    assert (
        reviews["current_sentiment"]["negative_share"]
        > reviews["reference_sentiment"]["negative_share"] + 0.15
    )
    # ... and features the drift does not touch are not named.
    for feature in UNMOVED:
        assert not columns[feature]["drifted"], feature


def test_weekly_sentiment_trend_shows_the_planted_slide_outside_the_reference_band(drift_run: Any) -> None:
    trend = drift_run.summary["reviews"]["weekly_sentiment"]
    assert trend["band"]["weeks"] >= 4 and trend["band"]["mean"] is not None
    current = [w for w in trend["weeks"] if w["current"] and w["reviews"] >= trend["min_week_reviews"]]
    assert current
    assert min(w["mean"] for w in current) < trend["band"]["mean"]["low"]
    assert trend["current_weeks_outside_band"] >= 1
    body = drift_run.html_path.read_text(encoding="utf-8").split("<body>", 1)[1]
    assert body.index('id="churnfs-headline"') < body.index('id="weekly-sentiment"') < body.index("<script")


def test_topic_components_carry_the_topic_models_labels(drift_run: Any, monitored_world: Settings) -> None:
    from transformations.topics import load_topic_model

    model = load_topic_model(monitored_world, monitored_world.embedding_model)
    assert model is not None and model.topic_names is not None
    topics = drift_run.summary["reviews"]["topics"]
    assert [t["label"] for t in topics] == model.topic_names
    labelled = {c["column"]: c.get("label") for c in drift_run.summary["features"]["columns"]}
    assert all(labelled[t["column"]] == t["label"] for t in topics if t["column"] in labelled)


def test_key_features_are_the_champions_most_important(drift_run: Any) -> None:
    keys = drift_run.summary["key_features"]
    assert keys["source"] == "champion"
    assert len(keys["names"]) == 5
    calendar = set(drift_run.summary["rules"]["calendar_features"])
    ranked = [name for name in keys["importance"] if name not in calendar]
    assert keys["names"] == ranked[:5]


def test_a_world_without_drift_monitored_like_the_demo_raises_no_alarm(no_drift_run: Any) -> None:
    summary = no_drift_run.summary
    assert no_drift_run.exit_code == 0, summary["headline"]
    assert summary["alerts"] == []
    assert summary["key_features"]["source"] == "champion"
    assert summary["predictions"]["available"]
    assert summary["prediction_log"]["users"] == 5  # the smoke step's five users
    assert summary["headline"][0] == "No alert (exit 0)."


def test_the_champions_predicted_churn_moves_when_its_users_go_quiet(monitored_world: Settings) -> None:
    from monitoring.predictions import load_champion, score

    config = MonitoringConfig()
    world = load_world_spec(monitored_world.raw_dir)
    model, note = load_champion(monitored_world)
    assert model is not None, note
    window = resolve_window("training", world, world.end, config.monitoring_warmup_days)
    snapshots = load_snapshots(
        monitored_world.offline_store_dir,
        window,
        max_rows=config.monitoring_max_rows,
        seed=0,
        active_only=True,
    )
    first, second = split_by_user(snapshots, seed=5)
    no_reviews = pd.DataFrame({"review_id": pd.Series(dtype=int), "review_text": pd.Series(dtype=str)})

    def scored(frame: pd.DataFrame, description: str) -> WindowData:
        return WindowData(description, frame, no_reviews, pd.Series(score(model, frame), dtype=float))

    same, _ = compare_windows(scored(first, "first half"), scored(second, "second half"), config)
    assert same["predictions"]["available"] and not same["predictions"]["drifted"], same["predictions"]

    # The latest snapshot's users with no event in 30 days: real rows, scored by the same champion.
    latest = resolve_window("latest", world, world.end)
    everyone = load_snapshots(
        monitored_world.offline_store_dir,
        latest,
        max_rows=config.monitoring_max_rows,
        seed=0,
        active_only=False,
    )
    quiet = everyone[everyone["events_30d"] == 0]
    assert len(quiet) > 100
    moved, _ = compare_windows(scored(first, "first half"), scored(quiet, "quiet users"), config)
    output = moved["predictions"]
    assert output["drifted"], output
    assert output["current_mean"] > output["reference_mean"]
    assert any(a.startswith("predicted churn probability drifted") for a in moved["alerts"])


def test_monitoring_writes_the_html_page_and_the_json_summary(
    drift_run: Any, monitored_world: Settings
) -> None:
    assert drift_run.html_path.parent == monitored_world.reports_dir
    assert drift_run.html_path.name.startswith("monitoring-") and drift_run.html_path.suffix == ".html"
    page = drift_run.html_path.read_text(encoding="utf-8")
    assert "mobile_share_30d" in page and "review_sentiment" in page
    # The page opens with the verdict and the features that really moved, calendar ones left out.
    body = page.split("<body>", 1)[1]
    assert body.startswith('<section id="churnfs-headline"')
    assert body.index("Features that moved") < body.index("<script")
    moved_line = next(
        line for line in drift_run.summary["headline"] if line.startswith("Features that moved")
    )
    assert "mobile_share_30d" in moved_line
    assert not any(f"{c} (" in moved_line for c in drift_run.summary["rules"]["calendar_features"])
    written = json.loads(drift_run.json_path.read_text(encoding="utf-8"))
    assert written["exit_code"] == DRIFT_EXIT_CODE
    assert written["features"]["drifted"] == drift_run.summary["features"]["drifted"]
    assert written["prediction_log"]["users"] > 0


def test_two_random_halves_of_the_training_period_are_not_flagged(monitored_world: Settings) -> None:
    config = MonitoringConfig()
    world = load_world_spec(monitored_world.raw_dir)
    window = resolve_window("training", world, world.end, config.monitoring_warmup_days)
    snapshots = load_snapshots(
        monitored_world.offline_store_dir,
        window,
        max_rows=config.monitoring_max_rows,
        seed=0,
        active_only=True,
    )
    reviews = load_reviews(monitored_world.raw_dir, window, max_rows=config.monitoring_max_reviews, seed=0)
    first, second = split_by_user(snapshots, seed=5)
    rng = np.random.default_rng(5)
    in_first = rng.random(len(reviews)) < 0.5
    summary, _ = compare_windows(
        WindowData("first half", first, reviews[in_first].reset_index(drop=True)),
        WindowData("second half", second, reviews[~in_first].reset_index(drop=True)),
        config,
    )
    assert summary["exit_code"] == 0, summary["alerts"]
    assert summary["features"]["drifted"] == []
    assert summary["features"]["calendar_drifted"] == []
    assert not any(d["drifted"] for d in summary["reviews"]["descriptors"])
    assert len(first) > 500 and len(second) > 500


def test_missing_prediction_log_is_one_clear_error(feature_world: Settings, tmp_path: Path) -> None:
    settings = linked_world(feature_world, tmp_path / "world")
    with pytest.raises(MissingDataError, match=r"no prediction log under .*serve the model"):
        run_monitoring(settings, show_progress=False)


def test_empty_current_window_is_one_clear_error(monitored_world: Settings) -> None:
    with pytest.raises(MissingDataError, match=r"current window .* holds no snapshot rows"):
        run_monitoring(monitored_world, current="2030-01-01..2030-02-01", show_progress=False)


def test_offline_store_without_a_needed_column_is_one_clear_error(
    feature_world: Settings, tmp_path: Path
) -> None:
    settings = linked_world(feature_world, tmp_path / "world", with_offline_store=False)
    settings.offline_store_dir.mkdir()
    for path in feature_world.offline_store_dir.glob("*.parquet"):
        shutil.copy(path, settings.offline_store_dir / path.name)
    activity = pq.read_table(settings.offline_store_dir / ACTIVITY_FILE)
    pq.write_table(activity.drop_columns(["events_30d"]), settings.offline_store_dir / ACTIVITY_FILE)
    with pytest.raises(SchemaError, match="lacks column events_30d"):
        run_monitoring(settings, show_progress=False)


def test_freshness_reads_the_online_store_against_each_views_ttl(
    feast_world: Settings, tmp_path: Path
) -> None:
    from monitoring.freshness import check_freshness

    world = load_world_spec(feast_world.raw_dir)
    latest = resolve_window("latest", world, world.end)
    snapshots = load_snapshots(feast_world.offline_store_dir, latest, max_rows=50, seed=0, active_only=True)
    freshness = check_freshness(feast_world, snapshots["user_id"].tolist(), world.end)
    assert freshness["available"], freshness.get("note")
    views = {v["feature_view"]: v for v in freshness["views"]}
    snapshot_views = {"user_activity_features", "user_profile_features", "user_review_features"}
    assert set(views) == {*snapshot_views, "user_review_embeddings"}
    for name, view in views.items():
        # materialized up to the world's end: every looked-up user has a value
        assert view["users_found"] == view["users_looked_up"] == len(snapshots), view
        assert view["stale"] is False
        if name in snapshot_views:  # the newest from one of the last (weekly) snapshots
            assert 0.0 <= view["age_hours"] <= 7 * 24, view
        else:  # event-sourced, no TTL: as old as the newest change among these users, never stale
            assert view["ttl_hours"] is None and view["age_hours"] >= 0.0, view

    missing = check_freshness(linked_world(feast_world, tmp_path / "world"), [1], world.end)
    assert missing == {
        "available": False,
        "note": f"no Feast registry at {tmp_path / 'world' / 'registry.db'}: run `make apply`",
    }
