"""Topic labels: class-based TF-IDF by hand, the labels stored in the model's version folder and
read back with it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from churnfs.settings import Settings
from transformations.topics import (
    LABELS_FILE,
    load_topic_model,
    save_topic_labels,
    save_topic_model,
    topic_words,
)


def test_topic_words_rank_by_class_based_tf_idf() -> None:
    texts = ["The parcel was late", "late courier, ok", "great parcel"]
    words = topic_words(texts, np.asarray([0, 0, 1]), k=3)
    # Topic 0 holds late x2, parcel, courier (4 words; "the", "was" and "ok" dropped), topic 1
    # great, parcel (2 words): A = 6 / 3 topics = 2; weight = share * log(1 + A / count overall).
    late, courier, parcel0 = 2 / 4 * math.log(1 + 2 / 2), 1 / 4 * math.log(1 + 2 / 1), 1 / 4 * math.log(2)
    assert late > courier > parcel0  # the word both topics use sinks
    assert words == [["late", "courier", "parcel"], ["great", "parcel"], []]


def test_labels_are_written_beside_the_centroids_and_loaded_with_the_model(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    centroids = np.asarray([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    model = save_topic_model(settings, centroids, "toy", "toy", datetime(2025, 1, 1, tzinfo=UTC), 3)
    assert load_topic_model(settings, "toy").topic_names is None  # type: ignore[union-attr]
    texts = ["late courier", "courier lost the parcel", "lovely soft fabric"]
    embeddings = np.asarray([[0.9, 0.1], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    labelled = save_topic_labels(settings, model, texts, embeddings)
    assert labelled.topic_names == ["courier, late, lost", "fabric, lovely, soft"]
    stored = json.loads((settings.artifacts_dir / "topic_model" / "v1" / LABELS_FILE).read_text())
    assert [t["reviews"] for t in stored["topics"]] == [2, 1]
    assert stored["topics"][0]["words"] == ["courier", "late", "lost", "parcel"]
    again = load_topic_model(settings, "toy")
    assert again is not None and again.version == 1
    assert again.topic_names == labelled.topic_names


@pytest.mark.parametrize("k", [1, 2])
def test_topics_without_reviews_get_a_placeholder_label(tmp_path: Path, k: int) -> None:
    settings = Settings(data_dir=tmp_path)
    centroids = np.eye(2, dtype=np.float32)[:k]
    model = save_topic_model(settings, centroids, "toy", "toy", datetime(2025, 1, 1, tzinfo=UTC), 0)
    labelled = save_topic_labels(settings, model, [], np.zeros((0, 2), dtype=np.float32))
    assert labelled.topic_names == [f"topic {i}" for i in range(k)]
