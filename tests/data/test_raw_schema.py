"""The raw world matches docs/data-model.md: files, columns, types, ranges and the links
between tables (checked on the shared small world)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnfs.settings import Settings
from churnfs.world import WorldSpec, load_world_spec
from tests.conftest import SMALL_SEED, SMALL_USERS

TS = pa.timestamp("us", tz="UTC")
CONTRACT: dict[str, dict[str, pa.DataType]] = {
    "user_table": {
        "user_id": pa.int64(),
        "signup_date": TS,
        "age": pa.int64(),
        "gender": pa.string(),
        "country": pa.string(),
        "income": pa.float64(),
        "device": pa.string(),
        "account_age_days": pa.int64(),
        "premium": pa.bool_(),
    },
    "event_logs": {
        "event_id": pa.int64(),
        "user_id": pa.int64(),
        "session_id": pa.int64(),
        "event_timestamp": TS,
        "event_type": pa.string(),
        "metadata": pa.string(),
    },
    "review_table": {
        "review_id": pa.int64(),
        "user_id": pa.int64(),
        "product_id": pa.int64(),
        "review_timestamp": TS,
        "rating": pa.int64(),
        "review_text": pa.string(),
        "helpful_votes": pa.int64(),
        "total_votes": pa.int64(),
    },
    "target_table": {"user_id": pa.int64(), "event_timestamp": TS, "churned": pa.int64()},
    "_oracle": {"user_id": pa.int64(), "event_timestamp": TS, "churn_probability": pa.float64()},
    "_reviews_truth": {"review_id": pa.int64(), "aspect": pa.string(), "tone": pa.string()},
}
EVENT_TYPES = {"page_view", "search", "add_to_cart", "purchase", "wishlist", "support_contact"}
PRICED = {"add_to_cart", "purchase", "wishlist"}
DEVICES = {"ios", "android", "web"}


@pytest.fixture(scope="module")
def spec(small_world: Settings) -> WorldSpec:
    return load_world_spec(small_world.raw_dir)


@pytest.fixture(scope="module")
def tables(small_world: Settings) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(small_world.raw_dir / f"{name}.parquet") for name in CONTRACT}


def _parse_metadata(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@pytest.fixture(scope="module")
def clean_events(tables: dict[str, pd.DataFrame], spec: WorldSpec) -> pd.DataFrame:
    """Event rows a feature job can use, with the metadata parsed."""
    ev = tables["event_logs"].copy()
    ev["meta"] = [_parse_metadata(m) for m in ev["metadata"]]
    ok = ev["user_id"].notna() & ev["meta"].notna()
    ok &= (ev["event_timestamp"] >= spec.start) & (ev["event_timestamp"] < spec.end)
    out = ev[ok].copy()
    out["user_id"] = out["user_id"].astype(np.int64)
    return out


def test_every_raw_file_has_the_contract_columns_and_types(small_world: Settings) -> None:
    for name, columns in CONTRACT.items():
        schema = pq.read_schema(small_world.raw_dir / f"{name}.parquet")
        assert schema.names == list(columns), name
        for column, dtype in columns.items():
            assert schema.field(column).type == dtype, f"{name}.{column}: {schema.field(column).type}"


def test_world_spec_records_scale_seed_and_drift(spec: WorldSpec) -> None:
    assert (spec.users, spec.seed, spec.drift) == (SMALL_USERS, SMALL_SEED, True)
    assert len(spec.cutoffs()) == 9


def test_user_table_is_unique_and_in_documented_ranges(
    tables: dict[str, pd.DataFrame], spec: WorldSpec
) -> None:
    users = tables["user_table"]
    assert users["user_id"].tolist() == list(range(1, SMALL_USERS + 1))
    assert users["age"].between(18, 80).all()
    assert set(users["gender"]) == {"female", "male", "other"}
    assert users["country"].nunique() == 10
    assert users["country"].str.fullmatch(r"[A-Z]{2}").all()
    assert users["income"].between(8_000, 400_000).all()
    assert set(users["device"]) == DEVICES
    assert 0.05 < users["premium"].mean() < 0.4


def test_signups_are_mostly_before_the_window_and_account_age_is_whole_days(
    tables: dict[str, pd.DataFrame], spec: WorldSpec
) -> None:
    users = tables["user_table"]
    before = users["signup_date"] < spec.start
    assert 0.70 < before.mean() < 0.80
    assert (users["signup_date"] >= spec.start - timedelta(days=5 * 365 + 1)).all()
    assert (users["signup_date"] < spec.end).all()
    expected = ((spec.start - users["signup_date"]) // timedelta(days=1)).where(before, 0)
    assert (users["account_age_days"] == expected).all()


def test_events_average_24_per_user_with_a_heavy_tail(
    clean_events: pd.DataFrame, tables: dict[str, pd.DataFrame]
) -> None:
    per_user = clean_events.groupby("user_id").size().reindex(tables["user_table"]["user_id"], fill_value=0)
    assert 21 <= per_user.mean() <= 27
    assert per_user.quantile(0.99) > 4 * per_user.median()
    assert set(clean_events["event_type"]) == EVENT_TYPES


def test_events_lie_in_the_window_after_signup(
    clean_events: pd.DataFrame, tables: dict[str, pd.DataFrame]
) -> None:
    signup = tables["user_table"].set_index("user_id")["signup_date"]
    assert (
        clean_events["event_timestamp"].to_numpy() >= signup.loc[clean_events["user_id"]].to_numpy()
    ).all()
    assert tables["event_logs"]["event_id"].is_unique


def test_sessions_belong_to_one_user_and_have_realistic_lengths(clean_events: pd.DataFrame) -> None:
    sessions = clean_events.groupby("session_id")
    assert (sessions["user_id"].nunique() == 1).all()
    length = sessions.size()
    assert 2.0 <= length.mean() <= 6.0
    assert length.max() <= 30
    assert (length >= 10).sum() > 50
    span = sessions["event_timestamp"].max() - sessions["event_timestamp"].min()
    assert span.max() < timedelta(hours=4)
    gaps = (
        clean_events.sort_values(["session_id", "event_timestamp"])
        .groupby("session_id")["event_timestamp"]
        .diff()
    )
    gaps = gaps.dropna()
    assert timedelta(seconds=5) < gaps.median() < timedelta(minutes=3)


def test_metadata_is_json_with_category_device_duration_and_price_on_priced_types(
    clean_events: pd.DataFrame,
) -> None:
    meta = pd.DataFrame(clean_events["meta"].tolist(), index=clean_events.index)
    assert meta["category"].map(lambda v: isinstance(v, str) and v != "").all()
    assert set(meta["device"]) == DEVICES
    assert meta["duration"].map(lambda v: isinstance(v, float) and v > 0).all()
    priced = clean_events["event_type"].isin(PRICED)
    assert meta.loc[priced, "price"].map(lambda v: isinstance(v, float) and v > 0).all()
    assert meta.loc[~priced, "price"].isna().all()


def test_unusable_event_rows_are_about_the_dirty_fraction_of_three_kinds(
    tables: dict[str, pd.DataFrame], clean_events: pd.DataFrame, spec: WorldSpec
) -> None:
    ev = tables["event_logs"]
    dirty = ev.drop(index=clean_events.index)
    expected = 0.0005 * len(ev)  # each event is drawn dirty on its own: binomial count
    assert abs(len(dirty) - expected) <= 4 * expected**0.5, (len(dirty), expected)
    assert dirty["user_id"].isna().sum() >= 5
    assert sum(_parse_metadata(m) is None for m in dirty["metadata"]) >= 5
    outside = (dirty["event_timestamp"] < spec.start) | (dirty["event_timestamp"] >= spec.end)
    assert outside.sum() >= 5


def test_reviews_are_by_a_minority_of_users_and_in_documented_ranges(
    tables: dict[str, pd.DataFrame], spec: WorldSpec
) -> None:
    reviews = tables["review_table"]
    users = tables["user_table"].set_index("user_id")
    assert reviews["review_id"].is_unique
    assert reviews["user_id"].isin(users.index).all()
    assert 0.2 < reviews["user_id"].nunique() / SMALL_USERS < 0.35
    assert 0.5 < len(reviews) / SMALL_USERS < 0.7
    assert reviews["rating"].between(1, 5).all()
    assert set(reviews["rating"]) == {1, 2, 3, 4, 5}
    words = reviews["review_text"].str.split().str.len()
    assert words.between(15, 60).all()
    assert ((reviews["helpful_votes"] >= 0) & (reviews["helpful_votes"] <= reviews["total_votes"])).all()
    assert (reviews["total_votes"] > 0).mean() > 0.5
    assert ((reviews["review_timestamp"] >= spec.start) & (reviews["review_timestamp"] < spec.end)).all()
    signup = users.loc[reviews["user_id"], "signup_date"].to_numpy()
    assert (reviews["review_timestamp"].to_numpy() >= signup).all()


def test_review_truth_has_one_row_per_review_with_known_aspects_and_tones(
    tables: dict[str, pd.DataFrame],
) -> None:
    truth = tables["_reviews_truth"]
    assert sorted(truth["review_id"]) == sorted(tables["review_table"]["review_id"])
    assert truth["review_id"].is_unique
    assert set(truth["aspect"]) == {"delivery", "price", "quality", "support", "app", "returns"}
    assert set(truth["tone"]) == {"negative", "neutral", "positive"}


def test_targets_cover_the_cutoffs_for_active_users_only(
    tables: dict[str, pd.DataFrame], clean_events: pd.DataFrame, spec: WorldSpec
) -> None:
    target = tables["target_table"]
    assert sorted(target["event_timestamp"].unique()) == [pd.Timestamp(c) for c in spec.cutoffs()]
    assert not target.duplicated(["user_id", "event_timestamp"]).any()
    assert set(target["churned"]) == {0, 1}
    signup = tables["user_table"].set_index("user_id")["signup_date"]
    assert (signup.loc[target["user_id"]].to_numpy() < target["event_timestamp"].to_numpy()).all()
    # Anyone who still acts at or after a cutoff, and signed up before it, is a row at that cutoff.
    rows = set(zip(target["user_id"], target["event_timestamp"], strict=True))
    for cutoff in spec.cutoffs():
        acting = clean_events.loc[clean_events["event_timestamp"] >= cutoff, "user_id"].unique()
        acting = [u for u in acting if signup.loc[u] < cutoff]
        assert acting and all((u, pd.Timestamp(cutoff)) in rows for u in acting)


def test_labels_agree_with_later_cutoffs_and_later_events(
    tables: dict[str, pd.DataFrame], clean_events: pd.DataFrame, spec: WorldSpec
) -> None:
    target = tables["target_table"]
    step = timedelta(days=spec.cutoff_every_days)
    horizon = timedelta(days=spec.label_horizon_days)
    label = dict(
        zip(zip(target["user_id"], target["event_timestamp"], strict=True), target["churned"], strict=True)
    )
    last_event = clean_events.groupby("user_id")["event_timestamp"].max()
    last_review = tables["review_table"].groupby("user_id")["review_timestamp"].max()
    last_cutoff = pd.Timestamp(spec.cutoffs()[-1])
    for (user, cutoff), churned in label.items():
        later = cutoff + step
        if churned == 1:
            # leaves within the horizon: still churning if active 14 days on, no event after the horizon
            assert label.get((user, later), 1) == 1
            assert (user, cutoff + step * -(-horizon.days // step.days)) not in label
            if user in last_event.index:
                assert last_event.loc[user] < cutoff + horizon
            if user in last_review.index:
                assert last_review.loc[user] < cutoff + horizon
        elif later <= last_cutoff:
            assert (user, later) in label  # stays the whole horizon, so still active 14 days on


def test_oracle_matches_target_rows_and_is_calibrated(tables: dict[str, pd.DataFrame]) -> None:
    target, oracle = tables["target_table"], tables["_oracle"]
    assert oracle[["user_id", "event_timestamp"]].equals(target[["user_id", "event_timestamp"]])
    p = oracle["churn_probability"]
    assert ((p > 0) & (p < 1)).all()
    assert abs(p.mean() - target["churned"].mean()) < 0.015
