"""Planted drift: present in the small world's last weeks, absent when generated with
``drift=False``, and touching nothing but the drifted values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnfs.settings import Settings
from churnfs.world import WorldSpec, load_world_spec
from datagen import generate_world
from tests.conftest import SMALL_SEED, SMALL_USERS


@pytest.fixture(scope="module")
def calm_world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The small world's twin: same users and seed, drift off."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("calm-world"))
    generate_world(settings, users=SMALL_USERS, seed=SMALL_SEED, drift=False, show_progress=False)
    return settings


def _read(settings: Settings, name: str) -> pd.DataFrame:
    return pd.read_parquet(Path(settings.raw_dir) / f"{name}.parquet")


def _android_share(settings: Settings) -> tuple[float, float]:
    """Share of events from android before ``train_end`` and in the drift period."""
    spec = load_world_spec(settings.raw_dir)
    events = _read(settings, "event_logs")
    device = events["metadata"].str.extract(r'"device": "(\w+)"')[0]
    before = events["event_timestamp"] < spec.train_end
    during = (events["event_timestamp"] >= spec.drift_start) & (events["event_timestamp"] < spec.end)
    return float((device[before] == "android").mean()), float((device[during] == "android").mean())


def _delivery_reviews(settings: Settings) -> tuple[float, float, float, float]:
    """Share of delivery reviews and mean rating, before ``train_end`` and in the drift period."""
    spec = load_world_spec(settings.raw_dir)
    reviews = _read(settings, "review_table").merge(_read(settings, "_reviews_truth"), on="review_id")
    before = reviews[reviews["review_timestamp"] < spec.train_end]
    during = reviews[reviews["review_timestamp"] >= spec.drift_start]
    assert len(during) > 100
    return (
        float((before["aspect"] == "delivery").mean()),
        float((during["aspect"] == "delivery").mean()),
        float(before["rating"].mean()),
        float(during["rating"].mean()),
    )


def _late_signup_android_share(settings: Settings, spec: WorldSpec) -> float:
    users = _read(settings, "user_table")
    late = users[users["signup_date"] >= spec.drift_start]
    assert len(late) > 50
    return float((late["device"] == "android").mean())


def test_drift_moves_event_devices_to_android_only_when_on(
    small_world: Settings, calm_world: Settings
) -> None:
    before, during = _android_share(small_world)
    assert during - before > 0.2
    calm_before, calm_during = _android_share(calm_world)
    assert abs(calm_during - calm_before) < 0.05


def test_drift_brings_a_delivery_problem_only_when_on(small_world: Settings, calm_world: Settings) -> None:
    share_before, share_during, rating_before, rating_during = _delivery_reviews(small_world)
    assert share_during - share_before > 0.3
    assert rating_during < rating_before - 0.7
    calm = _delivery_reviews(calm_world)
    assert abs(calm[1] - calm[0]) < 0.1
    assert abs(calm[3] - calm[2]) < 0.4


def test_drift_makes_new_signups_mostly_android(small_world: Settings, calm_world: Settings) -> None:
    spec = load_world_spec(small_world.raw_dir)
    assert _late_signup_android_share(small_world, spec) > 0.55
    assert _late_signup_android_share(calm_world, spec) < 0.45


def test_drift_changes_only_the_drifted_values(small_world: Settings, calm_world: Settings) -> None:
    """Labels, the oracle and the shape of every table are the same with and without drift."""
    for name in ("target_table", "_oracle"):
        pd.testing.assert_frame_equal(_read(small_world, name), _read(calm_world, name))
    drifted, calm = _read(small_world, "event_logs"), _read(calm_world, "event_logs")
    pd.testing.assert_frame_equal(drifted.drop(columns="metadata"), calm.drop(columns="metadata"))
    spec = load_world_spec(small_world.raw_dir)
    changed = drifted["metadata"] != calm["metadata"]
    assert changed.any()
    when = drifted.loc[changed, "event_timestamp"]
    # unusable rows keep the metadata of their original time, whatever their broken timestamp says
    assert ((when >= spec.drift_start) | (when < spec.start) | (when >= spec.end)).all()
    reviews, calm_reviews = _read(small_world, "review_table"), _read(calm_world, "review_table")
    pd.testing.assert_frame_equal(reviews[["review_id", "user_id"]], calm_reviews[["review_id", "user_id"]])
    users, calm_users = _read(small_world, "user_table"), _read(calm_world, "user_table")
    device_changed = users["device"] != calm_users["device"]
    assert (users.loc[device_changed, "signup_date"] >= spec.drift_start).all()
