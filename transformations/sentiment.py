"""Review sentiment: the VADER compound score of each review text, in [-1, 1].

VADER is a lexicon-and-rules model that ships with its lexicon inside the PyPI package, so
nothing is downloaded at run time. It scores one text at a time in pure Python (about
1,000 texts/s on one core); the feature job caches the score beside each review's embedding,
so a re-run only scores new or changed texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_scores(texts: Iterable[str]) -> np.ndarray:
    """VADER compound score of each text (float64, in [-1, 1]); an empty text scores 0."""
    analyzer = _analyzer()
    return np.fromiter((analyzer.polarity_scores(text)["compound"] for text in texts), dtype=np.float64)
