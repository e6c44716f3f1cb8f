"""The number of topics: chosen by the NPMI coherence of each topic's top words on the reviews
alone, recorded with the model version, forced by ``TOPIC_COUNT``, and the saved model reused
only while it meets the setting."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import sparse

from churnfs.settings import Settings
from transformations.topics import (
    SELECTION_CRITERION,
    TOPIC_CANDIDATES,
    choose_topic_count,
    ensure_topic_model,
    fit_topic_model,
    save_topic_model,
    topic_coherence,
)

TRAIN_END = datetime(2025, 4, 30, tzinfo=UTC)
BLOB_WORDS = [
    ["courier", "parcel", "late", "shipping", "tracking", "doorstep"],
    ["refund", "receipt", "return", "label", "exchange", "warranty"],
    ["fabric", "stitching", "seams", "cotton", "sturdy", "material"],
    ["checkout", "wishlist", "login", "crashes", "screen", "button"],
    ["bargain", "discount", "coupon", "pricey", "expensive", "cheap"],
]
"""Each blob's own words: its reviews use three of them, never another blob's."""


def blobs(
    centres: int, per_blob: int = 50, dim: int = 32, noise: float = 0.05
) -> tuple[np.ndarray, list[str]]:
    """``centres`` tight groups of unit vectors around orthogonal directions (e_0, e_1, ...) and
    a text for each: three of its group's words."""
    rng = np.random.default_rng(1)
    points = np.repeat(np.eye(dim, dtype=np.float32)[:centres], per_blob, axis=0)
    points += rng.normal(scale=noise, size=points.shape).astype(np.float32)
    texts = [
        " ".join(rng.choice(BLOB_WORDS[i], 3, replace=False)) for i in range(centres) for _ in range(per_blob)
    ]
    return points / np.linalg.norm(points, axis=1, keepdims=True), texts


def test_npmi_coherence_by_hand() -> None:
    # Four reviews; words 0 (in reviews 0, 1), 1 (0, 1), 2 (1), 3 (2, 3).
    present = sparse.csr_matrix(
        np.asarray([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=np.float64)
    )
    # Words 0 and 1 always together: p = 1/2 each and jointly, log(2) / -log(1/2) = 1.
    assert topic_coherence(present, [[0, 1]]) == pytest.approx(1.0)
    # Add word 2 (p = 1/4, with each of 0 and 1 in 1/4): log((1/4) / (1/8)) / -log(1/4) = 1/2.
    assert topic_coherence(present, [[0, 1, 2]]) == pytest.approx((1 + 0.5 + 0.5) / 3)
    # Words 0 and 3 never meet: -1. Topics are averaged; a one-word topic is left out.
    assert topic_coherence(present, [[0, 3], [0, 1], [2]]) == pytest.approx((-1 + 1) / 2)
    assert math.isclose(topic_coherence(present, [[3]]), -1.0)


def test_four_separated_blobs_give_four_topics_with_every_score_recorded() -> None:
    embeddings, texts = blobs(4)
    choice = choose_topic_count(embeddings, texts)
    assert choice.k == 4
    assert sorted(choice.scores) == list(TOPIC_CANDIDATES) == sorted(choice.silhouettes)
    # K = 4: each topic's words are its blob's six, which meet only in the blob's reviews:
    # p(word) = 1/8, p(pair) = 1/4 * (3/6 * 2/5) = 1/20, NPMI = log(20/6.4) / log(20) = 0.38
    # (sampling moves it a little); fewer topics mix blobs whose words never meet (-1).
    assert choice.coherences[4] == pytest.approx(math.log(20 / 6.4) / math.log(20), abs=0.02)
    assert max(choice.coherences[k] for k in (2, 3)) < choice.coherences[4] - 0.2
    # More topics split a blob and the halves keep its words: coherence stays, but only 24 of the
    # 6K words listed are distinct, diversity 4/K.
    for k in range(4, 13):
        assert choice.coherences[k] == pytest.approx(choice.coherences[4], abs=0.005)
        assert choice.diversities[k] == pytest.approx(4 / k)
        assert choice.scores[k] == pytest.approx(choice.coherences[k] * choice.diversities[k])
    assert max(choice.silhouettes, key=lambda k: choice.silhouettes[k]) == 4
    assert choose_topic_count(embeddings, texts).scores == choice.scores  # seeded


def test_selection_scores_a_seeded_sample_of_the_reviews() -> None:
    embeddings, texts = blobs(3, per_blob=200)
    choice = choose_topic_count(embeddings, texts, sample_size=150)
    assert choice.sample_reviews == 150 and choice.k == 3
    assert choose_topic_count(embeddings[::-1].copy(), texts[::-1], sample_size=150, seed=5).k == 3


def test_candidates_stop_one_short_of_the_reviews() -> None:
    embeddings, texts = blobs(2, per_blob=3)
    assert sorted(choose_topic_count(embeddings, texts).scores) == [2, 3, 4, 5]


def test_fitted_model_records_the_chosen_k_and_every_candidates_score(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    embeddings, texts = blobs(5)
    model = fit_topic_model(settings, embeddings, texts, "toy", "onnx", TRAIN_END)
    assert model.k == 5
    metadata = json.loads((tmp_path / "artifacts" / "topic_model" / "v1" / "metadata.json").read_text())
    selection = metadata["k_selection"]
    assert metadata["k"] == 5 and selection["setting"] == "auto"
    assert selection["criterion"] == SELECTION_CRITERION
    assert selection["chosen"] == 5 and selection["sample_reviews"] == 250
    expected = choose_topic_count(embeddings, texts)
    assert selection["candidates"] == [
        {
            "k": k,
            "score": round(expected.scores[k], 6),
            "coherence": round(expected.coherences[k], 6),
            "diversity": round(expected.diversities[k], 6),
            "silhouette_cosine": round(expected.silhouettes[k], 6),
        }
        for k in TOPIC_CANDIDATES
    ]
    # Each blob is one topic: its reviews all go to the same centroid, a different one per blob.
    topics = model.transform(embeddings).argmax(axis=1).reshape(5, 50)
    assert all(len(set(row)) == 1 for row in topics.tolist()) and len(set(topics[:, 0])) == 5


def test_topic_count_setting_forces_k_and_a_model_is_reused_only_while_it_meets_it(tmp_path: Path) -> None:
    embeddings, texts = blobs(4)
    times = np.zeros(len(embeddings), dtype=np.int64)  # all before train_end
    auto = Settings(data_dir=tmp_path)
    chosen = ensure_topic_model(auto, embeddings, texts, times, "toy", "onnx", TRAIN_END)
    assert (chosen.version, chosen.k) == (1, 4)

    forced = auto.model_copy(update={"topic_count": 7})
    seven = ensure_topic_model(forced, embeddings, texts, times, "toy", "onnx", TRAIN_END)
    assert (seven.version, seven.k) == (2, 7)
    assert seven.metadata["k_selection"] == {"setting": 7, "criterion": None}
    assert ensure_topic_model(forced, embeddings, texts, times, "toy", "onnx", TRAIN_END).version == 2

    # Back to auto: the newest version's K was forced, so K is chosen again, in a new version.
    again = ensure_topic_model(auto, embeddings, texts, times, "toy", "onnx", TRAIN_END)
    assert (again.version, again.k) == (3, 4)
    np.testing.assert_array_equal(again.centroids, chosen.centroids)  # seeded: the same fit
    # A forced K equal to the chosen one keeps it.
    four = auto.model_copy(update={"topic_count": 4})
    assert ensure_topic_model(four, embeddings, texts, times, "toy", "onnx", TRAIN_END).version == 3


def test_a_model_saved_without_a_choice_is_not_taken_for_a_chosen_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    save_topic_model(settings, np.eye(6, 32, dtype=np.float32), "toy", "onnx", TRAIN_END, 200)
    embeddings, texts = blobs(4)
    model = ensure_topic_model(settings, embeddings, texts, np.zeros(200, np.int64), "toy", "onnx", TRAIN_END)
    assert (model.version, model.k) == (2, 4)


def test_topic_count_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().topic_count == "auto"
    monkeypatch.setenv("TOPIC_COUNT", "8")
    assert Settings().topic_count == 8
    monkeypatch.setenv("TOPIC_COUNT", "1")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("TOPIC_COUNT", "many")
    with pytest.raises(ValidationError):
        Settings()
