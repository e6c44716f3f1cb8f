"""The default sentiment method against the others on review text the generator did not write:
the hand-written evaluation set (``tests/data/review_sentiment_eval.csv``) and the real Amazon and
movie snippets held out from the probe's fit (``read_snippets("held_out")``). Both are held out:
nothing was tuned on them; the probe's settings were fixed by cross-validation on its training
side before either was scored. And the shipped probe is the one its training pool gives."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from churnfs.settings import Settings
from transformations.embeddings import Encoder, load_encoder
from transformations.sentiment import (
    SENTIMENT_METHODS,
    fit_pool_probe,
    method_scores,
    pool_digest,
    probe_settings,
    probe_training_pool,
    read_snippets,
    sentiment_probe,
    shipped_probe_record,
    vader_scores,
)

EVAL_SET = Path(__file__).resolve().parents[1] / "data" / "review_sentiment_eval.csv"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    model_dir = tmp_path_factory.getbasetemp() / "review-model"
    return load_encoder(Settings(data_dir=model_dir, embedding_backend="onnx", embedding_device="cpu"))


def eval_set() -> tuple[list[str], np.ndarray]:
    with EVAL_SET.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], np.asarray([r["label"] == "positive" for r in rows])


@pytest.fixture(scope="module")
def auc_by_method(encoder: Encoder) -> dict[str, float]:
    texts, positive = eval_set()
    vader, embeddings = vader_scores(texts), encoder.encode(texts)
    return {
        m: float(roc_auc_score(positive, method_scores(m, vader, embeddings, texts, encoder)))
        for m in SENTIMENT_METHODS
    }


def test_default_method_ranks_real_reviews_at_least_as_well_as_vader(auc_by_method: dict[str, float]) -> None:
    default = Settings.model_fields["sentiment_method"].default
    assert auc_by_method[default] >= auc_by_method["vader"], auc_by_method


def test_default_method_ranks_real_reviews_at_least_as_well_as_every_other_method(
    auc_by_method: dict[str, float],
) -> None:
    default = Settings.model_fields["sentiment_method"].default
    assert auc_by_method[default] == max(auc_by_method.values()), auc_by_method


@pytest.fixture(scope="module")
def real_auc_by_method(encoder: Encoder) -> dict[str, dict[str, float]]:
    held_out = read_snippets("held_out")
    vader, embeddings = vader_scores(held_out.texts), encoder.encode(held_out.texts)
    result: dict[str, dict[str, float]] = {}
    for source in ("amazon", "movie"):
        mask = held_out.sources == source
        texts = [t for t, m in zip(held_out.texts, mask, strict=True) if m]
        result[source] = {
            m: float(
                roc_auc_score(
                    held_out.labels[mask], method_scores(m, vader[mask], embeddings[mask], texts, encoder)
                )
            )
            for m in SENTIMENT_METHODS
        }
    return result


@pytest.mark.parametrize("source", ["amazon", "movie"])
def test_default_method_ranks_real_held_out_snippets_at_least_as_well_as_vader(
    real_auc_by_method: dict[str, dict[str, float]], source: str
) -> None:
    default = Settings.model_fields["sentiment_method"].default
    aucs = real_auc_by_method[source]
    assert aucs[default] >= aucs["vader"], aucs


def test_the_shipped_probe_is_current_and_used_without_embedding_its_pool(encoder: Encoder) -> None:
    record = shipped_probe_record()
    assert record is not None, (
        "transformations/sentiment_probe.json is stale: python -m transformations.sentiment fit"
    )
    assert record["model"] == encoder.model_name
    assert record["pool_sha256"] == pool_digest(probe_training_pool())
    assert record["settings"] == probe_settings()
    encoded = encoder.texts_encoded
    probe = sentiment_probe(encoder)
    assert encoder.texts_encoded == encoded
    np.testing.assert_array_equal(probe.weights, np.asarray(record["weights"]))
    assert (probe.vader_weight, probe.intercept) == (record["vader_weight"], record["intercept"])


def test_refitting_the_probe_on_its_pool_gives_the_shipped_scores(encoder: Encoder) -> None:
    texts, _ = eval_set()
    vader, embeddings = vader_scores(texts), encoder.encode(texts)
    refit = fit_pool_probe(encoder).scores(embeddings, vader)
    shipped = sentiment_probe(encoder).scores(embeddings, vader)
    assert np.abs(refit - shipped).max() < 1e-3
