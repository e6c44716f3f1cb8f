"""The default sentiment method against the others on review text the generator did not write
(``tests/data/review_sentiment_eval.csv``, a held-out set: nothing was tuned on it; the probe's
settings were fixed by cross-validation on its own training set before the set was scored)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from churnfs.settings import Settings
from transformations.embeddings import Encoder, load_encoder
from transformations.sentiment import SENTIMENT_METHODS, method_scores, vader_scores

EVAL_SET = Path(__file__).resolve().parents[1] / "data" / "review_sentiment_eval.csv"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    model_dir = tmp_path_factory.getbasetemp() / "review-model"
    return load_encoder(Settings(data_dir=model_dir, embedding_backend="onnx", embedding_device="cpu"))


@pytest.fixture(scope="module")
def auc_by_method(encoder: Encoder) -> dict[str, float]:
    with EVAL_SET.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts = [r["text"] for r in rows]
    positive = np.asarray([r["label"] == "positive" for r in rows])
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
