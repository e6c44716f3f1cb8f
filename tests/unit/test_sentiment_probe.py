"""The ``probe`` sentiment method on hand-made vectors: its score is 2 * P(positive) - 1 of the
logistic regression it fits, z-scoring folds back into one dot product, blank texts score 0, the
fit runs once per encoder, and a shipped fit is used only while it is of today's pool and
settings."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from transformations.embeddings import Encoder
from transformations.sentiment import (
    NEUTRAL_ANCHORS,
    PROBE_FILE,
    centred_on,
    fit_pool_probe,
    fit_probe,
    method_scores,
    pool_digest,
    probe_features,
    probe_settings,
    probe_training_pool,
    sentiment_probe,
    shipped_probe_record,
    vader_scores,
    write_probe_file,
)


def toy_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    labels = np.repeat([1, 0], 20)
    embeddings = rng.normal(size=(40, 3)) + np.outer(2 * labels - 1, [1.0, 0.0, 0.0])
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    vader = np.clip(rng.normal(0.3 * (2 * labels - 1), 0.4), -1, 1)
    return embeddings, vader, labels


@pytest.mark.parametrize("with_vader", [True, False])
def test_probe_score_is_twice_the_regressions_positive_probability_minus_one(with_vader: bool) -> None:
    embeddings, vader, labels = toy_data()
    probe = fit_probe(embeddings, vader, labels, c=3.0, with_vader=with_vader)
    reference = LogisticRegression(C=3.0, max_iter=10_000).fit(
        probe_features(embeddings, vader, with_vader), labels
    )
    expected = 2 * reference.predict_proba(probe_features(embeddings, vader, with_vader))[:, 1] - 1
    np.testing.assert_allclose(probe.scores(embeddings, vader), expected, atol=1e-9)
    assert (probe.vader_weight != 0.0) is with_vader


def test_z_scored_probe_folds_the_scaling_into_its_weights() -> None:
    embeddings, vader, labels = toy_data()
    probe = fit_probe(embeddings, vader, labels, c=0.5, standardise=True)
    features = probe_features(embeddings, vader, True)
    mean, scale = features.mean(axis=0), features.std(axis=0)
    reference = LogisticRegression(C=0.5, max_iter=10_000).fit((features - mean) / scale, labels)
    expected = 2 * reference.predict_proba((features - mean) / scale)[:, 1] - 1
    np.testing.assert_allclose(probe.scores(embeddings, vader), expected, atol=1e-9)


def test_probe_fit_is_deterministic() -> None:
    embeddings, vader, labels = toy_data()
    first, second = fit_probe(embeddings, vader, labels), fit_probe(embeddings, vader, labels)
    np.testing.assert_array_equal(first.weights, second.weights)
    assert (first.vader_weight, first.intercept) == (second.vader_weight, second.intercept)


class HashModel:
    """Three dimensions from a checksum of the text: any text, no model, deterministic."""

    def get_sentence_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        vectors = np.asarray(
            [[(zlib.crc32(t.encode()) >> shift) % 97 + 1.0 for shift in (0, 8, 16)] for t in texts]
        )
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_probe_method_fits_once_per_encoder_and_scores_blank_text_zero() -> None:
    encoder = Encoder(model=HashModel(), model_name="hash", backend="toy", device="cpu", batch_size=64)
    texts = ["Great value.", "It broke.", "  "]
    vader = np.asarray([0.6, -0.4, 0.0])
    embeddings = encoder.encode(texts)
    scores = method_scores("probe", vader, embeddings, texts, encoder)
    encoded = encoder.texts_encoded
    again = method_scores("probe", vader, embeddings, texts, encoder)
    assert encoder.texts_encoded == encoded  # the fit is cached: no second pass over the training set
    np.testing.assert_array_equal(scores, again)
    assert scores[2] == 0.0 and np.all(np.abs(scores) < 1)
    np.testing.assert_allclose(scores[:2], sentiment_probe(encoder).scores(embeddings[:2], vader[:2]))
    assert method_scores("probe", np.zeros(0), np.zeros((0, 3)), [], encoder).shape == (0,)


def test_centring_puts_the_anchors_mean_log_odds_at_zero_and_keeps_the_ranking() -> None:
    embeddings, vader, labels = toy_data()
    probe = fit_probe(embeddings, vader, labels)
    anchors, anchor_vader = embeddings[:5], np.zeros(5)
    centred = centred_on(probe, anchors, anchor_vader)
    assert abs(centred.logits(anchors, anchor_vader).mean()) < 1e-12
    assert centred.intercept == pytest.approx(probe.intercept - probe.logits(anchors, anchor_vader).mean())
    np.testing.assert_array_equal(
        np.argsort(centred.scores(embeddings, vader)), np.argsort(probe.scores(embeddings, vader))
    )


def test_the_default_probe_puts_the_neutral_anchors_at_zero_on_average() -> None:
    encoder = Encoder(
        model=HashModel(), model_name="hash-neutral", backend="toy", device="cpu", batch_size=64
    )
    anchors = list(NEUTRAL_ANCHORS)
    logits = sentiment_probe(encoder).logits(encoder.encode(anchors), vader_scores(anchors))
    assert abs(logits.mean()) < 1e-9


def test_a_stale_or_missing_shipped_probe_is_not_used(tmp_path: Path) -> None:
    read = shipped_probe_record.__wrapped__  # the uncached reader
    record = json.loads(PROBE_FILE.read_text(encoding="utf-8"))
    assert read(PROBE_FILE) == record
    other_pool = tmp_path / "other-pool.json"
    other_pool.write_text(json.dumps({**record, "pool_sha256": "0" * 64}), encoding="utf-8")
    other_settings = tmp_path / "other-settings.json"
    other_settings.write_text(
        json.dumps({**record, "settings": {**record["settings"], "c": 2.0}}), encoding="utf-8"
    )
    assert read(other_pool) is None and read(other_settings) is None
    assert read(tmp_path / "missing.json") is None


def test_written_probe_file_records_its_fit_and_reads_back(tmp_path: Path) -> None:
    encoder = Encoder(model=HashModel(), model_name="hash-file", backend="toy", device="cpu", batch_size=64)
    path = tmp_path / "probe.json"
    record = write_probe_file(encoder, path)
    pool = probe_training_pool()
    assert json.loads(path.read_text(encoding="utf-8")) == record
    assert record["model"] == "hash-file" and record["pool_sha256"] == pool_digest(pool)
    assert record["settings"] == probe_settings() and sum(record["sentences"].values()) == len(pool)
    refit = fit_pool_probe(encoder, pool)
    np.testing.assert_allclose(record["weights"], refit.weights)
    assert (record["vader_weight"], record["intercept"]) == pytest.approx(
        (refit.vader_weight, refit.intercept)
    )
