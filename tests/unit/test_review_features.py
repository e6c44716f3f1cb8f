"""The review feature group on tiny hand-made reviews: every scalar by hand, the defaults for
users without reviews, point-in-time correctness, the topic artifact's reuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from churnfs.errors import MissingDataError
from churnfs.settings import Settings
from churnfs.world import WorldSpec
from transformations.embeddings import Encoder, load_encoder
from transformations.reviews import EMBEDDING_FEATURES, FEATURES, ReviewFeatureTables, build_review_features
from transformations.sentiment import sentiment_scores
from transformations.topics import (
    MIN_FIT_REVIEWS,
    TOPIC_SHARPNESS,
    ensure_topic_model,
    load_topic_model,
    save_topic_model,
)

AS_OF = [datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)]
TEXT = {
    1: "I love it, great product.",  # 5 words
    2: "Terrible delivery, arrived broken and late.",  # 6 words
    3: "It works as described.",  # 4 words
    4: "Awful support, nobody ever answered me at all.",  # 8 words
    5: "Good price for a solid jacket.",  # 6 words
    6: "Fine.",  # 1 word
}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def hand_made_reviews() -> pd.DataFrame:
    """User 1: five reviews (one exactly at the first as-of time); user 2: none; user 3 signs up
    between the two as-of times and writes one."""
    return pd.DataFrame(
        {
            "review_id": [1, 2, 3, 4, 5, 6],
            "user_id": [1, 1, 1, 1, 1, 3],
            "product_id": [10, 11, 12, 13, 14, 15],
            "review_timestamp": [
                ts("2025-01-10 00:00"),
                ts("2025-01-20 12:00"),
                ts("2025-02-01 00:00"),  # at the first as-of time: not in that snapshot
                ts("2025-02-10 06:00"),
                ts("2025-02-20 00:00"),
                ts("2025-02-20 00:00"),
            ],
            "rating": [5, 2, 4, 1, 3, 4],
            "review_text": [TEXT[i] for i in range(1, 7)],
            "helpful_votes": [3, 0, 1, 2, 0, 0],
            "total_votes": [4, 0, 2, 2, 5, 0],
        }
    )


def hand_made_users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [3, 1, 2],
            "signup_date": [ts("2025-02-15"), ts("2025-01-01"), ts("2025-01-01 12:00")],
        }
    )


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The ONNX fp32 encoder, loaded once per session (same settings key in every module)."""
    model_dir = tmp_path_factory.getbasetemp() / "review-model"
    return load_encoder(Settings(data_dir=model_dir, embedding_backend="onnx", embedding_device="cpu"))


@pytest.fixture()
def world(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Settings:
    """A world folder with its calendar and a saved two-topic model (delivery vs praise), its K
    forced by ``TOPIC_COUNT`` (so it is the current model, not refitted on three users)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("reviews"), embedding_backend="onnx", topic_count=2)
    WorldSpec(users=3, seed=0, drift=False).save(settings.raw_dir)
    anchors = encoder.encode(["The delivery was late and broken.", "I love it, great product."])
    save_topic_model(
        settings, anchors, encoder.model_name, encoder.backend, datetime(2025, 4, 30, tzinfo=UTC), 2
    )
    return settings


def build_tables(reviews: pd.DataFrame, world: Settings, encoder: Encoder) -> ReviewFeatureTables:
    return build_review_features(
        reviews, hand_made_users(), AS_OF, world, show_progress=False, encoder=encoder
    )


def build(reviews: pd.DataFrame, world: Settings, encoder: Encoder) -> pd.DataFrame:
    """The snapshots, each with ``review_embedding`` as of its time: the user's latest embedding
    row at or before it, as Feast's point-in-time join (no TTL) reads the event-sourced view."""
    tables = build_tables(reviews, world, encoder)
    joined = pd.merge_asof(
        tables.snapshots.sort_values("event_timestamp", kind="stable"),
        tables.embeddings.sort_values("event_timestamp", kind="stable"),
        on="event_timestamp",
        by="user_id",
        direction="backward",
    )
    assert joined["review_embedding"].notna().all()  # every snapshot has an embedding as of it
    return joined.sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)


def row(features: pd.DataFrame, user_id: int, as_of: datetime) -> pd.Series:
    match = features[(features.user_id == user_id) & (features.event_timestamp == as_of)]
    assert len(match) == 1
    return match.iloc[0]


def test_review_features_have_one_row_per_user_signed_up_before_each_as_of(
    world: Settings, encoder: Encoder
) -> None:
    tables = build_tables(hand_made_reviews(), world, encoder)
    features = tables.snapshots
    assert list(features.columns) == ["user_id", "event_timestamp", *FEATURES]
    assert list(tables.embeddings.columns) == ["user_id", "event_timestamp", *EMBEDDING_FEATURES]
    keys = list(zip(features.user_id, features.event_timestamp, strict=True))
    # Ordered by as-of time, then user: the offline store's order, written without a re-sort.
    assert keys == [(1, AS_OF[0]), (2, AS_OF[0]), (1, AS_OF[1]), (2, AS_OF[1]), (3, AS_OF[1])]
    assert features.user_id.dtype == np.int64
    assert str(features.event_timestamp.dt.tz) == "UTC"


def test_embedding_rows_exist_only_where_a_users_reviews_changed(world: Settings, encoder: Encoder) -> None:
    """User 1 reviews before both as-of times (two rows), user 2 never (one all-zero row at the
    first as-of time, none at the second), user 3 signs up between them (one row)."""
    embeddings = build_tables(hand_made_reviews(), world, encoder).embeddings
    keys = list(zip(embeddings.user_id, embeddings.event_timestamp, strict=True))
    assert keys == [(1, AS_OF[0]), (2, AS_OF[0]), (1, AS_OF[1]), (3, AS_OF[1])]
    vectors = {
        k: np.asarray(v, dtype=np.float32) for k, v in zip(keys, embeddings.review_embedding, strict=True)
    }
    assert not vectors[(2, AS_OF[0])].any()
    np.testing.assert_allclose(vectors[(3, AS_OF[1])], encoder.encode([TEXT[6]])[0], atol=1e-6)
    np.testing.assert_allclose(
        vectors[(1, AS_OF[1])], encoder.encode([TEXT[i] for i in range(1, 6)]).mean(axis=0), atol=1e-6
    )


def test_review_stats_match_hand_computed_values(world: Settings, encoder: Encoder) -> None:
    features = build(hand_made_reviews(), world, encoder)
    s = sentiment_scores([TEXT[i] for i in range(1, 7)], method=world.sentiment_method, encoder=encoder)

    first = row(features, 1, AS_OF[0])  # reviews 1 and 2 only
    assert first.has_reviews
    assert first.total_reviews == 2
    assert first.avg_rating == pytest.approx((5 + 2) / 2)
    assert first.avg_helpful_ratio == pytest.approx((3 / 4 + 0) / 2)  # 0 votes counts 0
    assert first.avg_text_length == pytest.approx((5 + 6) / 2)
    assert first.last_review_days == pytest.approx(11.5)  # 2025-01-20 12:00 -> 2025-02-01
    assert first.sentiment_score == pytest.approx((s[0] + s[1]) / 2)
    assert first.recent_sentiment == pytest.approx((s[0] + s[1]) / 2)

    second = row(features, 1, AS_OF[1])  # all five
    assert second.total_reviews == 5
    assert second.avg_rating == pytest.approx((5 + 2 + 4 + 1 + 3) / 5)
    assert second.avg_helpful_ratio == pytest.approx((3 / 4 + 0 + 1 / 2 + 2 / 2 + 0 / 5) / 5)
    assert second.avg_text_length == pytest.approx((5 + 6 + 4 + 8 + 6) / 5)
    assert second.last_review_days == pytest.approx(9.0)  # 2025-02-20 -> 2025-03-01
    assert second.sentiment_score == pytest.approx(s[:5].mean())
    assert second.recent_sentiment == pytest.approx((s[2] + s[3] + s[4]) / 3)  # latest three

    newcomer = row(features, 3, AS_OF[1])
    assert newcomer.total_reviews == 1
    assert newcomer.avg_helpful_ratio == 0.0
    assert newcomer.avg_text_length == 1.0
    assert newcomer.recent_sentiment == pytest.approx(s[5])


@pytest.mark.parametrize("method", ["vader", "prototype", "blend"])
def test_sentiment_scores_are_signed_by_tone(method: str, encoder: Encoder) -> None:
    positive, negative, flat = sentiment_scores(
        ["I love it, great product, excellent quality!", "Terrible, awful, broken and useless.", ""],
        method=method,
        encoder=encoder,
    )
    assert positive > 0.5
    assert negative < -0.5
    assert flat == 0.0


def test_users_without_reviews_get_the_documented_defaults(world: Settings, encoder: Encoder) -> None:
    features = build(hand_made_reviews(), world, encoder)
    for as_of, days_since_signup in ((AS_OF[0], 30.5), (AS_OF[1], 58.5)):
        quiet = row(features, 2, as_of)
        assert not quiet.has_reviews
        assert quiet.total_reviews == 0
        for name in (
            "avg_rating",
            "avg_helpful_ratio",
            "avg_text_length",
            "sentiment_score",
            "recent_sentiment",
        ):
            assert quiet[name] == 0.0
        assert quiet.last_review_days == pytest.approx(days_since_signup)
        assert np.array_equal(np.asarray(quiet.review_embedding), np.zeros(encoder.dimension, np.float32))
        assert np.array_equal(np.asarray(quiet.topic_vector), np.zeros(2, np.float32))


def test_review_embedding_and_topics_are_means_over_the_reviews(world: Settings, encoder: Encoder) -> None:
    features = build(hand_made_reviews(), world, encoder)
    vectors = encoder.encode([TEXT[1], TEXT[2]])
    first = row(features, 1, AS_OF[0])
    embedding = np.asarray(first.review_embedding, dtype=np.float32)
    assert embedding.shape == (384,)
    np.testing.assert_allclose(embedding, vectors.mean(axis=0), atol=1e-6)

    topics = load_topic_model(world, encoder.model_name)
    assert topics is not None
    logits = TOPIC_SHARPNESS * (vectors @ topics.centroids.T)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    topic_vector = np.asarray(first.topic_vector, dtype=np.float32)
    np.testing.assert_allclose(topic_vector, expected.mean(axis=0), atol=1e-5)
    assert topic_vector.sum() == pytest.approx(1.0, abs=1e-5)
    # Review 2 is about delivery, review 1 praise: one of each, so both topics carry weight.
    assert topic_vector.min() > 0.2


def test_reviews_at_or_after_the_as_of_time_never_change_that_snapshot(
    world: Settings, encoder: Encoder
) -> None:
    before = build(hand_made_reviews(), world, encoder)
    late = pd.DataFrame(
        {
            "review_id": [101, 102, 103],
            "user_id": [1, 2, 1],
            "product_id": [1, 1, 1],
            "review_timestamp": [ts("2025-03-01 00:00"), ts("2025-03-01 00:00"), ts("2025-05-01")],
            "rating": [1, 1, 5],
            "review_text": ["Worst shop ever, I am leaving.", "Never again.", "Back and happy."],
            "helpful_votes": [9, 9, 0],
            "total_votes": [9, 9, 0],
        }
    )
    after = build(pd.concat([hand_made_reviews(), late], ignore_index=True), world, encoder)
    pd.testing.assert_frame_equal(before, after)


def test_topic_model_is_fitted_once_on_training_reviews_then_reused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("topics"))
    rng = np.random.default_rng(0)
    n = MIN_FIT_REVIEWS + 40
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    train_end = datetime(2025, 4, 30, tzinfo=UTC)
    cutoff_us = int(train_end.timestamp() * 1e6)
    times = np.where(np.arange(n) < MIN_FIT_REVIEWS, cutoff_us - 1, cutoff_us)  # the last 40 at train_end
    texts = [f"parcel {('late', 'soft', 'cheap', 'broken')[i % 4]}" for i in range(n)]

    first = ensure_topic_model(settings, vectors, texts, times, "model-a", "onnx", train_end)
    metadata = json.loads((settings.artifacts_dir / "topic_model" / "v1" / "metadata.json").read_text())
    assert first.version == 1
    assert metadata["n_reviews"] == MIN_FIT_REVIEWS
    assert metadata["k"] == first.k and metadata["k_selection"]["setting"] == "auto"
    assert [c["k"] for c in metadata["k_selection"]["candidates"]] == [2, 3, 4, 5]  # six reviews: K < 6
    assert metadata["fitted_until"] == "2025-04-30T00:00:00+00:00"

    # Other embeddings (a refresh, a later run): the saved model is loaded as is.
    again = ensure_topic_model(settings, vectors[::-1].copy(), texts, times, "model-a", "onnx", train_end)
    assert again.version == 1
    np.testing.assert_array_equal(again.centroids, first.centroids)
    assert sorted(p.name for p in (settings.artifacts_dir / "topic_model").iterdir()) == ["v1"]

    # Another embedding model gets its own, new version.
    other = ensure_topic_model(settings, vectors, texts, times, "model-b", "onnx", train_end)
    assert other.version == 2


def test_topic_model_refuses_to_fit_on_too_few_reviews(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("few"))
    vectors = np.eye(4, dtype=np.float32)
    with pytest.raises(MissingDataError, match="churnfs features"):
        ensure_topic_model(
            settings,
            vectors,
            ["late parcel"] * 4,
            np.zeros(4, np.int64),
            "m",
            "onnx",
            datetime(2025, 4, 30, tzinfo=UTC),
        )


def test_single_user_refresh_never_fits_a_topic_model(
    tmp_path_factory: pytest.TempPathFactory, encoder: Encoder
) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("refresh"), embedding_backend="onnx")
    WorldSpec(users=1, seed=0, drift=False).save(settings.raw_dir)
    one_user = hand_made_reviews().query("user_id == 1")
    users = hand_made_users().query("user_id == 1")
    with pytest.raises(MissingDataError, match="no topic model"):
        build_review_features(one_user, users, AS_OF, settings, show_progress=False, encoder=encoder)
    assert not (settings.artifacts_dir / "topic_model").exists()
