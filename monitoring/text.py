"""Review text checks: sentiment, text descriptors and embedding drift.

Sentiment is each review's score by the review features' own method (``SENTIMENT_METHOD``,
through the embedding cache: ``monitoring.job`` attaches it), so the mean and the share of negative
reviews read the same way as ``sentiment_score``; without it, VADER's compound score. Length and
word count are Evidently's descriptors; the out-of-vocabulary share is measured against the
reference window's own vocabulary (no word list can be downloaded here, and words the model
never saw in training are what matter to it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset
from evidently.core.datasets import DatasetColumn
from evidently.descriptors import CustomColumnDescriptor, TextLength, WordCount
from evidently.legacy.core import ColumnType
from evidently.metrics.embeddings import ModelDriftMethod

TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")

SENTIMENT = "review_sentiment"
TEXT_LENGTH = "review_text_length"
WORD_COUNT = "review_word_count"
OOV_SHARE = "review_oov_share"
DESCRIPTOR_COLUMNS = (SENTIMENT, TEXT_LENGTH, WORD_COUNT, OOV_SHARE)


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (letters, with one inner apostrophe: ``don't``)."""
    return TOKEN.findall(text.lower())


def build_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Every token that occurs in ``texts``."""
    vocab: set[str] = set()
    for text in texts:
        vocab.update(tokens(text))
    return frozenset(vocab)


def oov_share(text: str, vocabulary: frozenset[str]) -> float:
    """Share of a text's tokens missing from ``vocabulary``; 0 for a text without tokens."""
    words = tokens(text)
    if not words:
        return 0.0
    return sum(w not in vocabulary for w in words) / len(words)


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER compound score of each text, in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=float)


def review_descriptors(
    texts: pd.Series, vocabulary: frozenset[str], sentiment: pd.Series | None = None
) -> pd.DataFrame:
    """Per-review descriptors: sentiment (``sentiment`` aligned with ``texts``, else VADER's
    compound), length in characters and words (Evidently's ``TextLength`` and ``WordCount``)
    and the out-of-vocabulary share."""

    def out_of_vocabulary(column: DatasetColumn) -> DatasetColumn:
        return DatasetColumn(
            type=ColumnType.Numerical, data=column.data.map(lambda t: oov_share(t, vocabulary))
        )

    frame = pd.DataFrame({"review_text": texts.astype(str).to_numpy()})
    dataset = Dataset.from_pandas(
        frame,
        data_definition=DataDefinition(text_columns=["review_text"]),
        descriptors=[
            TextLength("review_text", alias=TEXT_LENGTH),
            WordCount("review_text", alias=WORD_COUNT),
            CustomColumnDescriptor("review_text", out_of_vocabulary, alias=OOV_SHARE),
        ],
    )
    described = dataset.as_dataframe()
    return pd.DataFrame(
        {
            SENTIMENT: (
                vader_compound(frame["review_text"].tolist())
                if sentiment is None
                else sentiment.to_numpy(dtype=float)
            ),
            TEXT_LENGTH: described[TEXT_LENGTH].astype(float).to_numpy(),
            WORD_COUNT: described[WORD_COUNT].astype(float).to_numpy(),
            OOV_SHARE: described[OOV_SHARE].astype(float).to_numpy(),
        }
    )


def sentiment_summary(sentiment: pd.Series, negative_at: float) -> dict[str, Any]:
    """Mean sentiment and share of negative reviews (score <= ``negative_at``)."""
    values = sentiment.dropna()
    if values.empty:
        return {"reviews": 0, "mean": None, "negative_share": None}
    return {
        "reviews": len(values),
        "mean": float(values.mean()),
        "negative_share": float((values <= negative_at).mean()),
    }


def embedding_matrix(vectors: pd.Series) -> pd.DataFrame:
    """Stack a column of equal-length vectors into one column per component (rows with no
    vector or an all-zero vector, meaning 'no reviews yet', are left out)."""
    rows = [
        np.asarray(v, dtype=float) for v in vectors if isinstance(v, list | tuple | np.ndarray) and len(v)
    ]
    rows = [r for r in rows if np.any(r != 0)]
    if not rows:
        return pd.DataFrame()
    matrix = np.vstack(rows)
    return pd.DataFrame(matrix, columns=[f"e{i}" for i in range(matrix.shape[1])])


def embedding_drift(
    reference: pd.DataFrame, current: pd.DataFrame, *, threshold: float, max_rows: int, seed: int
) -> dict[str, Any]:
    """Evidently's model-based embedding drift: a classifier tries to tell the windows apart;
    its ROC AUC is the score (0.5: indistinguishable), drift above ``threshold``."""
    if len(reference) < 20 or len(current) < 20:
        return {
            "available": False,
            "note": f"too few embeddings to compare ({len(reference)} reference, {len(current)} current)",
        }
    ref = reference.sample(min(len(reference), max_rows), random_state=seed).reset_index(drop=True)
    cur = current.sample(min(len(current), max_rows), random_state=seed).reset_index(drop=True)
    method = ModelDriftMethod(threshold=threshold)
    score, drifted, name = method(cur.copy(), ref.copy())
    return {
        "available": True,
        "method": f"evidently {name} (domain classifier ROC AUC)",
        "score": float(score),
        "threshold": threshold,
        "drifted": bool(drifted),
        "reference_rows": len(ref),
        "current_rows": len(cur),
    }
