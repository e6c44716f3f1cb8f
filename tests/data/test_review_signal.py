"""The planted review structure is recovered from the small world's generated reviews.

Measures: sentiment is the ROC-AUC of the settings' ``SENTIMENT_METHOD`` score for telling the
generator's ``positive`` from ``negative`` reviews (neutral ones left out), threshold 0.85. Topics use
purity: each review goes to its most likely topic, each topic is labelled with the planted
aspect most of its reviews carry, and purity is the share of reviews whose topic's label is
their own aspect (``_reviews_truth.parquet``), threshold 0.7 (chance, all in one topic, is the
largest aspect's share, about 0.25). The number of topics is the one the topic model chose on the
reviews alone (``TOPIC_COUNT=auto``); the generator's six aspects only grade it here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnfs.settings import Settings
from churnfs.world import load_world_spec
from transformations.embeddings import ReviewVectors, load_encoder, review_vectors
from transformations.topics import TOPIC_CANDIDATES, TopicModel, ensure_topic_model, topic_words


@pytest.fixture(scope="module")
def reviews_with_truth(small_world: Settings) -> pd.DataFrame:
    reviews = pd.read_parquet(small_world.raw_dir / "review_table.parquet")
    truth = pd.read_parquet(small_world.raw_dir / "_reviews_truth.parquet")
    return reviews.merge(truth, on="review_id", validate="one_to_one")


@pytest.fixture(scope="module")
def vectors(
    small_world: Settings, reviews_with_truth: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> ReviewVectors:
    model_dir = tmp_path_factory.getbasetemp() / "review-model"
    encoder = load_encoder(Settings(data_dir=model_dir, embedding_backend="onnx", embedding_device="cpu"))
    settings = small_world.model_copy(update={"embedding_backend": "onnx"})
    return review_vectors(reviews_with_truth, settings, encoder, show_progress=False)


def test_sentiment_separates_negative_from_positive_reviews(
    reviews_with_truth: pd.DataFrame, vectors: ReviewVectors
) -> None:
    polar = (reviews_with_truth["tone"] != "neutral").to_numpy()
    positive = (reviews_with_truth["tone"] == "positive").to_numpy()[polar]
    assert positive.sum() > 50 and (~positive).sum() > 50
    auc = roc_auc_score(positive, vectors.sentiment[polar])
    assert auc >= 0.85, f"sentiment ROC-AUC {auc:.3f}"


@pytest.fixture(scope="module")
def topic_model(
    small_world: Settings,
    reviews_with_truth: pd.DataFrame,
    vectors: ReviewVectors,
    tmp_path_factory: pytest.TempPathFactory,
) -> TopicModel:
    """The topic model fitted on the small world's reviews, under a folder of its own: in the
    session's world it would become the model that world's feature job loads (this one is fitted
    on the onnx backend's vectors, the job's on its default backend's)."""
    spec = load_world_spec(small_world.raw_dir)
    times = reviews_with_truth["review_timestamp"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64")
    return ensure_topic_model(
        small_world.model_copy(update={"data_dir": tmp_path_factory.mktemp("topics")}),
        vectors.embeddings,
        reviews_with_truth["review_text"].astype(str).tolist(),
        times.to_numpy(),
        "all-MiniLM-L6-v2",
        "onnx",
        spec.train_end,
    )


def test_topics_recover_the_planted_aspects(
    small_world: Settings, reviews_with_truth: pd.DataFrame, vectors: ReviewVectors, topic_model: TopicModel
) -> None:
    spec = load_world_spec(small_world.raw_dir)
    times = (
        reviews_with_truth["review_timestamp"]
        .dt.tz_convert("UTC")
        .dt.as_unit("us")
        .astype("int64")
        .to_numpy()
    )
    model = topic_model
    selection = model.metadata["k_selection"]
    assert isinstance(selection, dict) and selection["setting"] == "auto"
    scores = {c["k"]: c["score"] for c in selection["candidates"]}
    assert sorted(scores) == list(TOPIC_CANDIDATES)
    assert model.k == selection["chosen"] == max(scores, key=lambda k: scores[k])  # not the truth's
    assert model.metadata["n_reviews"] == int((times < spec.train_end.timestamp() * 1e6).sum())
    topic = model.transform(vectors.embeddings).argmax(axis=1)
    table = pd.crosstab(topic, reviews_with_truth["aspect"].to_numpy())
    purity = table.max(axis=1).sum() / len(topic)
    assert purity >= 0.7, f"topic purity {purity:.3f}\n{table}"
    assert np.unique(table.idxmax(axis=1)).size >= 5  # not one aspect everywhere


ASPECT_WORDS = {
    "delivery": {"delivery", "shipping", "courier", "parcel", "delivered"},
    "price": {"price", "expensive", "cheap", "money", "deal"},
    "quality": {"quality", "material", "stitching", "build"},
    "support": {"support", "customer", "agent", "service"},
    "app": {"app", "checkout", "wishlist", "website"},
    "returns": {"return", "returns", "refund", "returned"},
}


def test_topic_labels_name_the_aspect_each_topic_holds(
    small_world: Settings, reviews_with_truth: pd.DataFrame, vectors: ReviewVectors, topic_model: TopicModel
) -> None:
    """The c-TF-IDF words of a topic name the planted aspect most of its reviews carry (the
    generator's truth is used here only, never to label)."""
    spec = load_world_spec(small_world.raw_dir)
    times = reviews_with_truth["review_timestamp"].dt.tz_convert("UTC")
    model = topic_model
    before = (times < spec.train_end).to_numpy()
    topic = model.transform(vectors.embeddings[before]).argmax(axis=1)
    words = topic_words(reviews_with_truth.loc[before, "review_text"].tolist(), topic, model.k)
    table = pd.crosstab(topic, reviews_with_truth.loc[before, "aspect"].to_numpy())
    majority = {int(t): str(aspect) for t, aspect in zip(table.index, table.idxmax(axis=1), strict=True)}
    named = [t for t, aspect in majority.items() if ASPECT_WORDS[aspect] & set(words[t])]
    assert len(named) >= model.k - 1, {t: (aspect, words[t]) for t, aspect in majority.items()}
