"""The planted structure is really in the small world: behaviour and reviews follow the hidden
satisfaction, churn rates are believable, premium and tenure protect, the oracle is informative."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from churnfs.settings import Settings
from churnfs.world import WorldSpec, load_world_spec
from datagen.generator import roc_auc

ASPECT_WORDS = {
    "delivery": r"deliver|shipping|shipped|courier|parcel|package|tracking",
    "price": r"price|expensive|cheap|value|discount|deal|cost|overpriced|bargain|fee",
    "quality": r"quality|broke|material|made|fabric|stitching|defective|sturdy|craftsmanship|durable|flimsy",
    "support": r"support|customer service|agent|ticket|chat",
    "app": r"\bapp\b",
    "returns": r"return|refund|exchange",
}


@pytest.fixture(scope="module")
def spec(small_world: Settings) -> WorldSpec:
    return load_world_spec(small_world.raw_dir)


@pytest.fixture(scope="module")
def raw(small_world: Settings) -> dict[str, pd.DataFrame]:
    names = ("user_table", "event_logs", "review_table", "target_table", "_oracle", "_reviews_truth")
    out = {name: pd.read_parquet(small_world.raw_dir / f"{name}.parquet") for name in names}
    events = out["event_logs"].dropna(subset=["user_id"]).copy()
    events["user_id"] = events["user_id"].astype(np.int64)
    out["event_logs"] = events
    return out


def _count_in(events: pd.DataFrame, rows: pd.DataFrame, start: timedelta, end: timedelta) -> pd.Series:
    """Events per target row in ``[cutoff + start, cutoff + end)``."""
    joined = rows[["user_id", "event_timestamp"]].rename(columns={"event_timestamp": "cutoff"})
    joined = joined.reset_index(names="row").merge(events[["user_id", "event_timestamp"]], on="user_id")
    inside = (joined["event_timestamp"] >= joined["cutoff"] + start) & (
        joined["event_timestamp"] < joined["cutoff"] + end
    )
    return joined[inside].groupby("row").size().reindex(rows.index, fill_value=0)


def test_churn_rate_per_cutoff_is_between_5_and_25_percent(raw: dict[str, pd.DataFrame]) -> None:
    rates = raw["target_table"].groupby("event_timestamp")["churned"].mean()
    assert len(rates) == 9
    assert rates.between(0.05, 0.25).all(), rates.to_dict()


def test_churners_activity_falls_in_the_weeks_before_churn(
    raw: dict[str, pd.DataFrame], spec: WorldSpec
) -> None:
    # Rows with ten weeks of history inside the window, for users signed up before it.
    history = timedelta(weeks=10)
    rows = raw["target_table"].merge(raw["user_table"][["user_id", "signup_date"]], on="user_id")
    rows = rows[
        (rows["event_timestamp"] >= spec.start + history)
        & (rows["signup_date"] < rows["event_timestamp"] - history)
    ]
    rows = rows.reset_index(drop=True)
    churners = rows["churned"] == 1
    assert churners.sum() > 200
    fortnights = [
        _count_in(raw["event_logs"], rows, -timedelta(weeks=k), -timedelta(weeks=k - 2))
        for k in (10, 6, 4, 2)
    ]
    churner_means = [float(count[churners].mean()) for count in fortnights]
    stayer_means = [float(count[~churners].mean()) for count in fortnights]
    assert churner_means[-1] < 0.7 * churner_means[0]
    assert stayer_means[-1] > 0.85 * stayer_means[0]
    assert churner_means[1:] == sorted(churner_means[1:], reverse=True)  # falling fortnight after fortnight


def test_support_contacts_rise_before_churn(raw: dict[str, pd.DataFrame]) -> None:
    target = raw["target_table"]
    support = raw["event_logs"][raw["event_logs"]["event_type"] == "support_contact"]
    last_30d = _count_in(support, target, -timedelta(days=30), timedelta(0))
    churners = target["churned"] == 1
    assert last_30d[churners].mean() > 3 * last_30d[~churners].mean()


def test_premium_and_tenure_lower_churn(raw: dict[str, pd.DataFrame]) -> None:
    rows = raw["target_table"].merge(raw["user_table"], on="user_id")
    tenure = rows["event_timestamp"] - rows["signup_date"]
    premium = rows.groupby("premium")["churned"].mean()
    assert premium[True] < 0.7 * premium[False]
    assert (
        rows.loc[tenure > timedelta(days=365), "churned"].mean()
        < rows.loc[tenure < timedelta(days=60), "churned"].mean()
    )


def test_oracle_ranks_churners_well(raw: dict[str, pd.DataFrame]) -> None:
    auc = roc_auc(raw["target_table"]["churned"].to_numpy(), raw["_oracle"]["churn_probability"].to_numpy())
    assert 0.78 < auc < 0.95


def test_review_tone_follows_rating_and_vader_recovers_it(raw: dict[str, pd.DataFrame]) -> None:
    reviews = raw["review_table"].merge(raw["_reviews_truth"], on="review_id")
    expected_tone = np.select(
        [reviews["rating"] <= 2, reviews["rating"] == 3], ["negative", "neutral"], "positive"
    )
    assert (reviews["tone"] == expected_tone).all()
    analyzer = SentimentIntensityAnalyzer()
    compound = np.array([analyzer.polarity_scores(text)["compound"] for text in reviews["review_text"]])
    valenced = (reviews["tone"] != "neutral").to_numpy()
    assert roc_auc((reviews["tone"] == "positive").to_numpy()[valenced], compound[valenced]) >= 0.85
    assert pd.Series(compound).corr(reviews["rating"], method="spearman") > 0.5


def test_reviews_turn_sour_before_churn(raw: dict[str, pd.DataFrame]) -> None:
    target = raw["target_table"]
    reviews = raw["review_table"]
    joined = target.merge(reviews, on="user_id")
    month_before = (joined["review_timestamp"] < joined["event_timestamp"]) & (
        joined["review_timestamp"] >= joined["event_timestamp"] - timedelta(days=30)
    )
    rating = joined[month_before].groupby("churned")["rating"].mean()
    assert rating[1] < rating[0] - 0.8


def test_review_texts_are_varied(raw: dict[str, pd.DataFrame]) -> None:
    texts = raw["review_table"]["review_text"]
    assert texts.nunique() > 0.9 * len(texts)
    first_sentences = texts.str.split(r"(?<=\.) ", regex=True).str[0]
    assert first_sentences.nunique() > 100
    assert texts.str.split().str.len().std() > 5


def test_primary_aspect_dominates_the_review_text(raw: dict[str, pd.DataFrame]) -> None:
    reviews = raw["review_table"].merge(raw["_reviews_truth"], on="review_id")
    sentences = reviews["review_text"].str.lower().str.split(r"(?<=\.) ", regex=True)
    counts = pd.DataFrame(
        {
            aspect: sentences.map(lambda ss, p=re.compile(pattern): sum(bool(p.search(s)) for s in ss))
            for aspect, pattern in ASPECT_WORDS.items()
        }
    )
    primary = counts.to_numpy()[np.arange(len(reviews)), counts.columns.get_indexer(reviews["aspect"])]
    assert (primary >= 2).mean() > 0.9
    assert (primary >= counts.max(axis=1).to_numpy()).mean() > 0.9


def _behaviour_features(raw: dict[str, pd.DataFrame], spec: WorldSpec) -> pd.DataFrame:
    """Per target row, what a feature job could know before the cutoff: activity counts and
    recency, support contacts, purchases, review ratings, premium, tenure, age."""
    events = raw["event_logs"]
    events = events[(events["event_timestamp"] >= spec.start) & (events["event_timestamp"] < spec.end)]
    reviews = raw["review_table"]
    users = raw["user_table"].set_index("user_id")
    frames = []
    for cutoff, rows in raw["target_table"].groupby("event_timestamp"):
        f = rows[["user_id", "churned"]].copy()
        before = events[events["event_timestamp"] < cutoff]
        age_of = (cutoff - before["event_timestamp"]) / timedelta(days=1)
        windows = {
            "events_7d": age_of < 7,
            "events_30d": age_of < 30,
            "events_prev_30d": (age_of >= 30) & (age_of < 60),
            "support_30d": (age_of < 30) & (before["event_type"] == "support_contact"),
            "purchases_30d": (age_of < 30) & (before["event_type"] == "purchase"),
            "support_total": before["event_type"] == "support_contact",
            "events_total": age_of >= 0,
        }
        for name, mask in windows.items():
            f[name] = f["user_id"].map(before[mask].groupby("user_id").size()).fillna(0)
        tenure = ((cutoff - users.loc[f["user_id"], "signup_date"]) / timedelta(days=1)).to_numpy(dtype=float)
        last = f["user_id"].map(before.groupby("user_id")["event_timestamp"].max())
        f["last_active_days"] = ((cutoff - last) / timedelta(days=1)).fillna(pd.Series(tenure, index=f.index))
        written = reviews[reviews["review_timestamp"] < cutoff].sort_values("review_timestamp")
        f["reviews"] = f["user_id"].map(written.groupby("user_id").size()).fillna(0)
        f["recent_rating"] = f["user_id"].map(
            written.groupby("user_id").tail(3).groupby("user_id")["rating"].mean()
        )
        f["tenure_days"] = tenure
        f["premium"] = users.loc[f["user_id"], "premium"].to_numpy().astype(int)
        f["age"] = users.loc[f["user_id"], "age"].to_numpy()
        f["cutoff"] = cutoff
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def test_behaviour_recovers_most_of_the_oracles_signal(raw: dict[str, pd.DataFrame], spec: WorldSpec) -> None:
    """The hidden risk is observable: a small model on behaviour before the cutoff, trained on the
    training cutoffs, ranks validation rows nearly as well as the oracle itself."""
    import lightgbm as lgb

    data = _behaviour_features(raw, spec)
    oracle = raw["_oracle"].rename(columns={"event_timestamp": "cutoff"})
    data = data.merge(oracle, on=["user_id", "cutoff"])
    train = data[data["cutoff"].isin([pd.Timestamp(c) for c in spec.train_cutoffs()])]
    valid = data[data["cutoff"].isin([pd.Timestamp(c) for c in spec.validation_cutoffs()])]
    features = [c for c in data.columns if c not in ("user_id", "churned", "cutoff", "churn_probability")]
    model = lgb.LGBMClassifier(
        n_estimators=150, learning_rate=0.05, num_leaves=7, min_child_samples=40, n_jobs=1, verbose=-1
    )
    model.fit(train[features], train["churned"])
    model_auc = roc_auc(valid["churned"].to_numpy(), model.predict_proba(valid[features])[:, 1])
    oracle_auc = roc_auc(valid["churned"].to_numpy(), valid["churn_probability"].to_numpy())
    assert model_auc >= 0.9 * oracle_auc, (model_auc, oracle_auc)
