"""Review topics: a distribution over ``TOPIC_COUNT`` topics for each review.

The topic model is spherical k-means on the L2-normalised review embeddings: ``TOPIC_COUNT``
unit-length centroids. A review's topic distribution is the softmax of its cosine similarity
to each centroid times ``TOPIC_SHARPNESS``, so similar texts share topics smoothly and a
clear-cut review puts most of its mass on one topic.

``TOPIC_COUNT = 6``: the generator plants six aspects (delivery, price, quality, support, app,
returns). On the small test world K = 6 recovers them with purity 0.90 (share of reviews whose
topic's majority aspect is their own), while K = 8 split and merged aspects (purity 0.77).

The model is fitted only on reviews written before the world's ``train_end`` (so nothing from
the validation period leaks into training features) and saved as a versioned artifact,
``settings.artifacts_dir/topic_model/v<N>/`` with ``centroids.npy`` and ``metadata.json`` (K,
embedding model, backend, fitted_until, n_reviews, created). Later runs and single-user refresh
load the newest version fitted for the current embedding model and never refit it; a new
version is fitted only when none exists for that model.

Each topic gets a label a person can read: its top words by class-based TF-IDF (BERTopic's
c-TF-IDF) over the training-period reviews it wins (``topic_words``), stored beside the centroids
as ``labels.json`` in the same version folder (``save_topic_labels``). The feature job labels a
version once, after either engine fitted it (``transformations.job``); serving and monitoring show
``topic_vector`` with these labels.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from churnfs.errors import MissingDataError
from churnfs.settings import Settings

logger = logging.getLogger(__name__)

TOPIC_COUNT = 6
TOPIC_SHARPNESS = 20.0
"""Softmax scale on cosine similarity: a gap of 0.1 in cosine is a factor e^2 in weight."""
MIN_FIT_REVIEWS = TOPIC_COUNT
"""k-means needs at least K reviews before ``train_end``; below ``WELL_FITTED_REVIEWS`` the fit
is logged as weak (tiny worlds), not refused."""
WELL_FITTED_REVIEWS = 20 * TOPIC_COUNT
SEED = 0
MAX_FIT_REVIEWS = 20_000
"""Reviews the topic model is fitted on, at most (a seeded sample of the training period's)."""


LABEL_WORDS = 5
"""Top words kept per topic; a label joins the first ``LABEL_NAME_WORDS`` of them."""
LABEL_NAME_WORDS = 3
LABELS_FILE = "labels.json"
LABEL_TOKEN = r"(?u)\b[a-zA-Z][a-zA-Z']{2,}\b"
"""Words of three letters or more (with an inner apostrophe); English stop words are dropped."""


@dataclass(frozen=True)
class TopicModel:
    """Fitted centroids and where they came from."""

    centroids: np.ndarray  # float32 (K, dim), unit rows
    version: int
    metadata: dict[str, object]
    labels: dict[str, object] | None = None
    """``labels.json`` of this version (``topics``: per topic its ``label``, ``words`` and
    ``reviews``), or None before the job labelled it."""

    @property
    def topic_names(self) -> list[str] | None:
        """One label per topic, in topic order, or None when the version has no labels yet."""
        if self.labels is None:
            return None
        topics = self.labels.get("topics")
        return [str(t["label"]) for t in topics] if isinstance(topics, list) else None

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Topic distribution of each (normalised) embedding: float32 (n, K), rows sum to 1."""
        if len(embeddings) == 0:
            return np.zeros((0, self.k), dtype=np.float32)
        # float64: a float32 product's rounding depends on how many rows go through it at once,
        # and the sharpness amplifies it (up to 2e-6 between all users at once and a bucket)
        logits = TOPIC_SHARPNESS * (
            np.asarray(embeddings, dtype=np.float64) @ self.centroids.T.astype(np.float64)
        )
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
        return weights.astype(np.float32)


def topic_model_root(settings: Settings) -> Path:
    return settings.artifacts_dir / "topic_model"


def _versions(root: Path) -> list[tuple[int, Path]]:
    found = []
    for path in root.glob("v*"):
        match = re.fullmatch(r"v(\d+)", path.name)
        if match and (path / "metadata.json").exists() and (path / "centroids.npy").exists():
            found.append((int(match.group(1)), path))
    return sorted(found)


def load_topic_model(settings: Settings, embedding_model: str) -> TopicModel | None:
    """The newest saved topic model fitted on ``embedding_model``'s embeddings, or None."""
    for version, path in reversed(_versions(topic_model_root(settings))):
        metadata = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
        if metadata.get("embedding_model") == embedding_model:
            centroids = np.load(path / "centroids.npy").astype(np.float32)
            labels_path = path / LABELS_FILE
            labels = json.loads(labels_path.read_text(encoding="utf-8")) if labels_path.exists() else None
            return TopicModel(centroids=centroids, version=version, metadata=metadata, labels=labels)
    return None


def topic_words(
    texts: Sequence[str], topics: np.ndarray, k: int, top_n: int = LABEL_WORDS
) -> list[list[str]]:
    """The ``top_n`` words of each of ``k`` topics by class-based TF-IDF: all reviews of a topic
    (``topics[i]`` is review i's topic) form one document; a word weighs its share of that
    document's words times ``log(1 + A / f)``, ``f`` its count over all topics and ``A`` the mean
    words per topic, so words every topic uses (the product nouns) sink. Ties go alphabetically;
    a topic without reviews gets no words."""
    from sklearn.feature_extraction.text import CountVectorizer

    documents = [" ".join(str(t) for t, c in zip(texts, topics, strict=True) if c == i) for i in range(k)]
    if not any(documents):
        return [[] for _ in range(k)]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=LABEL_TOKEN, lowercase=True)
    counts = np.asarray(vectorizer.fit_transform(documents).todense(), dtype=np.float64)
    vocabulary = vectorizer.get_feature_names_out()
    per_topic = counts.sum(axis=1, keepdims=True)
    tf = np.divide(counts, per_topic, out=np.zeros_like(counts), where=per_topic > 0)
    weight = tf * np.log1p(counts.sum() / k / np.maximum(counts.sum(axis=0), 1.0))
    words = []
    for i in range(k):
        order = np.lexsort((vocabulary, -weight[i]))  # heaviest first, then alphabetical
        words.append([str(vocabulary[j]) for j in order[:top_n] if weight[i, j] > 0])
    return words


def save_topic_labels(
    settings: Settings, model: TopicModel, texts: Sequence[str], embeddings: np.ndarray
) -> TopicModel:
    """Label ``model``'s topics from ``texts`` (training-period reviews) and their ``embeddings``:
    each review goes to its most likely topic; ``labels.json`` is written into the model's
    version folder (atomically) and the labelled model returned."""
    topics = model.transform(embeddings).argmax(axis=1) if len(embeddings) else np.zeros(0, dtype=int)
    words = topic_words(texts, topics, model.k)
    counts = np.bincount(topics, minlength=model.k)
    labels: dict[str, object] = {
        "method": f"class-based TF-IDF, top {LABEL_WORDS} words, label = first {LABEL_NAME_WORDS}",
        "n_reviews": len(texts),
        "created": datetime.now(UTC).isoformat(),
        "topics": [
            {
                "topic": i,
                "label": ", ".join(words[i][:LABEL_NAME_WORDS]) or f"topic {i}",
                "words": words[i],
                "reviews": int(counts[i]),
            }
            for i in range(model.k)
        ],
    }
    folder = topic_model_root(settings) / f"v{model.version}"
    staging = folder / f".{LABELS_FILE}.{os.getpid()}"
    staging.write_text(json.dumps(labels, indent=2), encoding="utf-8")
    os.replace(staging, folder / LABELS_FILE)
    labelled = TopicModel(
        centroids=model.centroids, version=model.version, metadata=model.metadata, labels=labels
    )
    logger.info("topic model v%d labelled: %s", model.version, "; ".join(labelled.topic_names or []))
    return labelled


def fit_centroids(embeddings: np.ndarray, k: int = TOPIC_COUNT, seed: int = SEED) -> np.ndarray:
    """Spherical k-means: k-means on unit vectors, centroids re-normalised to unit length.

    At most ``MAX_FIT_REVIEWS`` reviews (a seeded sample) take part: six topics need no more, and
    the fit's time grows with them (38,000 reviews at 100,000 users: 13 s; 20,000: 6 s)."""
    from sklearn.cluster import KMeans

    embeddings = np.asarray(embeddings, dtype=np.float32)
    if len(embeddings) > MAX_FIT_REVIEWS:
        sample = np.random.default_rng(seed).choice(len(embeddings), MAX_FIT_REVIEWS, replace=False)
        embeddings = embeddings[np.sort(sample)]
    km = KMeans(n_clusters=k, n_init=10, random_state=seed)
    km.fit(embeddings)
    centroids = km.cluster_centers_.astype(np.float32)
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def fit_topic_model(
    settings: Settings,
    embeddings: np.ndarray,
    embedding_model: str,
    backend: str,
    fitted_until: datetime,
) -> TopicModel:
    """Fit on ``embeddings`` (reviews before ``fitted_until`` only) and save as the next version."""
    if len(embeddings) < MIN_FIT_REVIEWS:
        raise MissingDataError(
            f"only {len(embeddings)} reviews before {fitted_until:%Y-%m-%d} to fit the topic model "
            f"(need {MIN_FIT_REVIEWS}): run the batch job (`churnfs features`) on the whole world first"
        )
    if len(embeddings) < WELL_FITTED_REVIEWS:
        logger.warning("topic model fitted on only %d reviews: topics will be noisy", len(embeddings))
    model = save_topic_model(
        settings, fit_centroids(embeddings), embedding_model, backend, fitted_until, len(embeddings)
    )
    logger.info(
        "topic model v%d fitted on %d reviews before %s", model.version, len(embeddings), fitted_until
    )
    return model


def save_topic_model(
    settings: Settings,
    centroids: np.ndarray,
    embedding_model: str,
    backend: str,
    fitted_until: datetime,
    n_reviews: int,
) -> TopicModel:
    """Save unit-row ``centroids`` as the next version ``topic_model/v<N>/`` (written to a staging
    folder, then renamed into place, so a reader never sees half a model)."""
    centroids = np.asarray(centroids, dtype=np.float32)
    root = topic_model_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    versions = _versions(root)
    version = (versions[-1][0] + 1) if versions else 1
    metadata: dict[str, object] = {
        "k": int(centroids.shape[0]),
        "dimension": int(centroids.shape[1]),
        "method": "spherical k-means, softmax of cosine similarity",
        "sharpness": TOPIC_SHARPNESS,
        "embedding_model": embedding_model,
        "backend": backend,
        "fitted_until": fitted_until.astimezone(UTC).isoformat(),
        "n_reviews": int(n_reviews),
        "created": datetime.now(UTC).isoformat(),
    }
    staging = Path(tempfile.mkdtemp(prefix=".topic_model.", dir=root))
    try:
        np.save(staging / "centroids.npy", centroids)
        (staging / "metadata.json").write_text(
            json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8"
        )
        os.replace(staging, root / f"v{version}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TopicModel(centroids=centroids, version=version, metadata=metadata)


def ensure_topic_model(
    settings: Settings,
    embeddings: np.ndarray,
    review_times_us: np.ndarray,
    embedding_model: str,
    backend: str,
    fitted_until: datetime,
    allow_fit: bool = True,
) -> TopicModel:
    """Load the saved topic model for ``embedding_model``; fit and save one only when none exists
    (and ``allow_fit``), on the reviews written before ``fitted_until``."""
    model = load_topic_model(settings, embedding_model)
    if model is not None:
        return model
    if not allow_fit:
        raise MissingDataError(
            f"no topic model for {embedding_model} under {topic_model_root(settings)}: "
            "run the batch job (`churnfs features`) first"
        )
    cutoff_us = int(fitted_until.timestamp() * 1_000_000)
    return fit_topic_model(
        settings, embeddings[review_times_us < cutoff_us], embedding_model, backend, fitted_until
    )
