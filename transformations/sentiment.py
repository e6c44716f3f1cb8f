"""Review sentiment: one score in [-1, 1] per review text, by the method ``SENTIMENT_METHOD`` names.

- ``vader``: VADER's compound score. A lexicon-and-rules model whose lexicon ships inside the
  PyPI package (nothing downloaded); pure Python, about 1,000 texts/s on one core. Strong on
  explicit sentiment words, blind to text without them (it gives exactly 0 to many real review
  sentences: "it stopped charging after a week").
- ``prototype``: a zero-shot score from the review's sentence embedding (the one the pipeline
  already computes, so no second model pass): its cosine similarity to the centroid of positive
  prototype sentences minus that to the centroid of negative ones. The prototypes are
  hand-written contrastive pairs (the same situation, praised and criticised, across products,
  food, films, clothes, delivery and service), so what a pair shares (its topic) cancels in the
  difference and what remains is the direction from bad to good. Zero is placed at the mean
  score of a few plain factual review sentences (neutral anchors) and the scale is set so that a
  prototype, scored against the other prototypes (leave-one-out), gets ``PROTOTYPE_TARGET``,
  the size of a clearly polar VADER score; then ``tanh`` keeps it in [-1, 1]. Nothing is fitted
  to labelled reviews.
- ``blend`` (the default): the mean of the two. The two fail in different places (VADER on
  sentences without sentiment words and on some negation, the embedding on short emphatic
  sentences whose topic dominates the vector), so their mean is the safer default; it was
  chosen by that reasoning, before any measurement on the evaluation set
  (``tests/data/review_sentiment_eval.csv``, docs/benchmarks.md).

An empty or blank text scores 0 by every method. Everything is per text and deterministic for a
given encoder (model and backend), so the batch job, a refresh and a Spark bucket agree. The
embedding cache stores only the VADER part (``transformations.embeddings``); the method's score
is derived from it and the cached embedding when read, so switching methods never mixes scores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from churnfs.settings import Settings
    from transformations.embeddings import Encoder

SentimentMethod = Literal["vader", "prototype", "blend"]
SENTIMENT_METHODS: tuple[str, ...] = get_args(SentimentMethod)
DEFAULT_METHOD: SentimentMethod = "blend"

POSITIVE_PROTOTYPES: tuple[str, ...] = (
    "This product is excellent and works perfectly.",
    "Great value for the money, I would buy it again.",
    "The food was delicious and the staff were lovely.",
    "A wonderful film, I enjoyed every minute of it.",
    "The clothes fit well and the fabric feels high quality.",
    "My order arrived quickly and in perfect condition.",
    "Customer service solved my problem right away.",
    "It does exactly what it promises and more.",
    "I am really happy with this purchase.",
    "Everything went smoothly from start to finish.",
    "Still working like new after months of daily use.",
    "Highly recommended, one of the best I have had.",
)
"""Each line pairs with the negative prototype at the same position (same situation, opposite
verdict)."""

NEGATIVE_PROTOTYPES: tuple[str, ...] = (
    "This product is poor and does not work properly.",
    "A waste of money, I would never buy it again.",
    "The food was bland and the staff were rude.",
    "A dull film, I was bored from start to finish.",
    "The clothes fit badly and the fabric feels cheap.",
    "My order arrived late and damaged.",
    "Customer service never solved my problem.",
    "It does not do what it promises.",
    "I am really disappointed with this purchase.",
    "Everything that could go wrong went wrong.",
    "It broke after a few weeks of normal use.",
    "Not recommended, one of the worst I have had.",
)

NEUTRAL_ANCHORS: tuple[str, ...] = (
    "I ordered it on a Monday and it came on Thursday.",
    "The item is blue and comes in three sizes.",
    "We went for dinner with two friends on Saturday.",
    "The film runs for about two hours.",
    "I bought this to replace my old one.",
    "It comes with a cable and a short manual.",
)
"""Plain factual review sentences: their mean score is the prototype method's zero."""

PROTOTYPE_TARGET = 0.75
"""What a typical prototype scores against the others: the size of VADER's compound for a
clearly polar sentence, so the two halves of ``blend`` weigh alike."""


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: Iterable[str]) -> np.ndarray:
    """VADER compound score of each text (float64, in [-1, 1]); an empty text scores 0."""
    analyzer = _analyzer()
    return np.fromiter((analyzer.polarity_scores(text)["compound"] for text in texts), dtype=np.float64)


@dataclass(frozen=True)
class PrototypeAxis:
    """The prototype method for one encoder: ``score = tanh(scale * (e @ direction - offset))``."""

    direction: np.ndarray  # float64 (dim,): positive centroid minus negative centroid
    offset: float  # the neutral anchors' mean projection
    scale: float

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Score of each L2-normalised embedding row, in (-1, 1)."""
        projection = np.asarray(embeddings, dtype=np.float64) @ self.direction
        return np.tanh(self.scale * (projection - self.offset))


def build_prototype_axis(positive: np.ndarray, negative: np.ndarray, neutral: np.ndarray) -> PrototypeAxis:
    """The axis from the prototypes' embeddings (rows L2-normalised; ``positive[i]`` pairs with
    ``negative[i]``): centroid difference, zero at the neutral anchors, and the scale at which a
    prototype, scored against the centroids without its own pair, gets ``PROTOTYPE_TARGET``."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    direction = positive.mean(axis=0) - negative.mean(axis=0)
    offset = float((np.asarray(neutral, np.float64) @ direction).mean())
    n = len(positive)
    margins = []
    for i in range(n):
        others = np.arange(n) != i
        held_out = positive[others].mean(axis=0) - negative[others].mean(axis=0)
        held_offset = float((np.asarray(neutral, np.float64) @ held_out).mean())
        margins += [positive[i] @ held_out - held_offset, held_offset - negative[i] @ held_out]
    typical = float(np.median(margins))
    if typical <= 0:
        raise ValueError("the prototypes do not separate under this encoder: positive and negative overlap")
    return PrototypeAxis(
        direction=direction, offset=offset, scale=float(np.arctanh(PROTOTYPE_TARGET) / typical)
    )


_AXES: dict[tuple[str, str, str], PrototypeAxis] = {}
_AXES_LOCK = threading.Lock()


def prototype_axis(encoder: Encoder) -> PrototypeAxis:
    """The prototype axis under ``encoder``, embedded once per process and (model, backend,
    device): the same key the embedding cache trusts to give the same vectors."""
    key = (encoder.model_name, encoder.backend, encoder.device)
    with _AXES_LOCK:
        axis = _AXES.get(key)
        if axis is None:
            vectors = encoder.encode([*POSITIVE_PROTOTYPES, *NEGATIVE_PROTOTYPES, *NEUTRAL_ANCHORS])
            n = len(POSITIVE_PROTOTYPES)
            axis = _AXES[key] = build_prototype_axis(vectors[:n], vectors[n : 2 * n], vectors[2 * n :])
    return axis


def method_scores(
    method: str,
    vader: np.ndarray,
    embeddings: np.ndarray,
    texts: Sequence[str] | np.ndarray,
    encoder: Encoder | None,
) -> np.ndarray:
    """The ``method`` score of each text from its VADER score and its embedding (``encoder``'s,
    L2-normalised; unused, and ``encoder`` may be None, for ``vader``). Blank texts score 0."""
    vader = np.asarray(vader, dtype=np.float64)
    if method == "vader":
        return vader
    if method not in SENTIMENT_METHODS:
        raise ValueError(f"SENTIMENT_METHOD must be one of {', '.join(SENTIMENT_METHODS)}, not {method!r}")
    if encoder is None:
        raise ValueError(f"sentiment method {method!r} needs the encoder that made the embeddings")
    embedded = prototype_axis(encoder).scores(embeddings) if len(vader) else np.zeros(0)
    scores = embedded if method == "prototype" else (vader + embedded) / 2
    blank = np.fromiter((not str(t).strip() for t in texts), dtype=bool, count=len(vader))
    return np.where(blank, 0.0, scores)


def sentiment_scores(
    texts: Iterable[str],
    method: str | None = None,
    encoder: Encoder | None = None,
    settings: Settings | None = None,
) -> np.ndarray:
    """Sentiment of each text (float64, in [-1, 1]) by ``method`` (default: the settings'
    ``SENTIMENT_METHOD``); an empty text scores 0. Embeds the texts with ``encoder`` (default:
    the settings' encoder, loaded once per process) when the method needs embeddings."""
    texts = [str(t) for t in texts]
    if method is None or (encoder is None and method != "vader"):
        from churnfs.settings import get_settings

        settings = settings or get_settings()
        method = method or settings.sentiment_method
    vader = vader_scores(texts)
    if method == "vader":
        return vader
    if encoder is None:
        from transformations.embeddings import load_encoder

        assert settings is not None
        encoder = load_encoder(settings)
    return method_scores(method, vader, encoder.encode(texts), texts, encoder)
