"""Review topics: a distribution over K topics for each review.

The topic model is spherical k-means on the L2-normalised review embeddings: K unit-length
centroids. A review's topic distribution is the softmax of its cosine similarity to each centroid
times ``TOPIC_SHARPNESS``, so similar texts share topics smoothly and a clear-cut review puts most
of its mass on one topic.

K is chosen when the model is fitted, from the training-period reviews alone
(``choose_topic_count``, setting ``TOPIC_COUNT=auto``, the default): every K in
``TOPIC_CANDIDATES`` (2 to 12, fewer when there are few reviews) is fitted on a seeded sample of
at most ``SELECTION_SAMPLE`` reviews, each topic is summed up by its top words (class-based TF-IDF,
as its label is), and K is scored by topic quality (Dieng, Ruiz and Blei 2020): those words' mean
NPMI coherence over the sample's reviews (how much more often a topic's words appear together
than apart; Lau et al. 2014 found it the closest to people's judgement of topics) times their
diversity (the share of distinct words among all topics' top words, which falls when a topic is
split into halves that keep its words). The best wins, ties to the smaller K. The mean cosine
silhouette of each K is recorded beside it but not used: on the generated worlds it rises all the
way to K = 12 (MiniLM separates the reviews of each product ever finer), so it cannot place K.
The generator's planted aspects are never read here; they only grade the result in
``tests/data/test_review_signal.py``. ``TOPIC_COUNT=<int>`` forces K.

The model is fitted only on reviews written before the world's ``train_end`` (so nothing from
the validation period leaks into training features) and saved as a versioned artifact,
``settings.artifacts_dir/topic_model/v<N>/`` with ``centroids.npy`` and ``metadata.json`` (K, how
K was chosen with each candidate's score, embedding model, backend, fitted_until, n_reviews,
created). The newest version for the current embedding model is the current one: later runs and
single-user refresh load it and never refit it, as long as it satisfies ``TOPIC_COUNT`` (a forced
K equal to its K; ``auto``: its K was chosen by the criterion). Otherwise a batch run fits the next
version.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from churnfs.errors import MissingDataError
from churnfs.settings import Settings

if TYPE_CHECKING:
    from scipy import sparse
    from sklearn.cluster import KMeans

logger = logging.getLogger(__name__)

TOPIC_SHARPNESS = 20.0
"""Softmax scale on cosine similarity: a gap of 0.1 in cosine is a factor e^2 in weight."""
TOPIC_CANDIDATES = range(2, 13)
"""K tried under ``TOPIC_COUNT=auto``: 2 to 12, and at most one fewer than the sampled reviews."""
SELECTION_SAMPLE = 3_000
"""Reviews (a seeded sample of the training period's) each candidate K is fitted and scored on."""
KMEANS_INITS = 10
"""k-means restarts (best of), for every candidate K as for the fitted model, so a K is scored on
the model a fit would give (with three restarts a K's coherence differed from ten's by up to 0.19
on the small test world)."""
COHERENCE_WORDS = 10
"""Top words per topic whose pairs the coherence scores."""
SELECTION_CRITERION = (
    f"topic quality: mean NPMI coherence times diversity of each topic's top {COHERENCE_WORDS} "
    "class-based TF-IDF words"
)
MIN_FIT_REVIEWS = 6
"""The fewest reviews before ``train_end`` a topic model is fitted on (and at least K when
``TOPIC_COUNT`` forces K); below ``WELL_FITTED_REVIEWS_PER_TOPIC`` per topic the fit is logged
as weak (tiny worlds), not refused."""
WELL_FITTED_REVIEWS_PER_TOPIC = 20
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
    if not len(texts):
        return [[] for _ in range(k)]
    words = _word_counts(texts)
    if words is None:
        return [[] for _ in range(k)]
    counts, vocabulary = words
    return [[str(vocabulary[j]) for j in top] for top in _top_word_indices(counts, topics, k, top_n)]


def _word_counts(texts: Sequence[str]) -> tuple[sparse.csr_matrix, np.ndarray] | None:
    """Each review's word counts (sparse, reviews x vocabulary, the label's tokens without English
    stop words) and the vocabulary, sorted; None when no review has a word."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(stop_words="english", token_pattern=LABEL_TOKEN, lowercase=True)
    try:
        counts = vectorizer.fit_transform([str(t) for t in texts]).tocsr()
    except ValueError:  # empty vocabulary
        return None
    return counts, vectorizer.get_feature_names_out()


def _top_word_indices(counts: sparse.csr_matrix, topics: np.ndarray, k: int, top_n: int) -> list[list[int]]:
    """Vocabulary indices of each topic's ``top_n`` words by class-based TF-IDF (``topic_words``)."""
    from scipy import sparse

    rows = np.asarray(topics, dtype=np.int64)
    membership = sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(k, len(rows)))
    per_topic_words = np.asarray((membership @ counts).todense(), dtype=np.float64)
    per_topic = per_topic_words.sum(axis=1, keepdims=True)
    tf = np.divide(per_topic_words, per_topic, out=np.zeros_like(per_topic_words), where=per_topic > 0)
    weight = tf * np.log1p(per_topic_words.sum() / k / np.maximum(per_topic_words.sum(axis=0), 1.0))
    alphabetical = np.arange(weight.shape[1])  # the vocabulary is sorted
    tops = []
    for i in range(k):
        order = np.lexsort((alphabetical, -weight[i]))  # heaviest first, then alphabetical
        tops.append([int(j) for j in order[:top_n] if weight[i, j] > 0])
    return tops


def topic_coherence(present: sparse.spmatrix, tops: Sequence[Sequence[int]]) -> float:
    """Mean NPMI coherence of topics given by their top words' indices: per topic the mean over
    its word pairs of ``log(p(a, b) / (p(a) p(b))) / -log(p(a, b))``, probabilities being shares
    of reviews (``present``: reviews x vocabulary, 1 where a review uses a word) that hold the
    words; a pair never seen together scores -1. Topics with fewer than two words are left out."""
    n = present.shape[0]
    per_topic = []
    for top in tops:
        if len(top) < 2:
            continue
        columns = present[:, sorted(top)]
        together = np.asarray((columns.T @ columns).todense(), dtype=np.float64) / n
        alone = np.diag(together)
        pairs = np.triu_indices(len(top), k=1)
        joint = together[pairs]
        with np.errstate(divide="ignore", invalid="ignore"):
            npmi = np.log(joint / (alone[pairs[0]] * alone[pairs[1]])) / -np.log(joint)
        npmi = np.where(joint > 0, npmi, -1.0)
        npmi = np.where(joint >= 1.0, 1.0, npmi)  # both words in every review
        per_topic.append(float(npmi.mean()))
    return float(np.mean(per_topic)) if per_topic else -1.0


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


@dataclass(frozen=True)
class TopicCountChoice:
    """How K was chosen: the setting, and under ``auto`` each candidate's scores."""

    k: int
    setting: int | str
    """``TOPIC_COUNT``: ``"auto"`` or the forced K."""
    scores: dict[int, float]
    """The criterion per candidate K, coherence times diversity; empty when K was forced."""
    coherences: dict[int, float]
    diversities: dict[int, float]
    silhouettes: dict[int, float]
    """Mean cosine silhouette per candidate K, recorded beside it, not used to choose."""
    sample_reviews: int
    seconds: float

    def as_metadata(self) -> dict[str, object]:
        """The ``k_selection`` entry of a version's ``metadata.json``."""
        if self.setting != "auto":
            return {"setting": self.setting, "criterion": None}
        return {
            "setting": "auto",
            "criterion": SELECTION_CRITERION,
            "chosen": self.k,
            "sample_reviews": self.sample_reviews,
            "seed": SEED,
            "seconds": round(self.seconds, 3),
            "candidates": [
                {
                    "k": k,
                    "score": round(self.scores[k], 6),
                    "coherence": round(self.coherences[k], 6),
                    "diversity": round(self.diversities[k], 6),
                    "silhouette_cosine": round(self.silhouettes[k], 6),
                }
                for k in sorted(self.scores)
            ],
        }


def choose_topic_count(
    embeddings: np.ndarray,
    texts: Sequence[str],
    candidates: Sequence[int] = TOPIC_CANDIDATES,
    sample_size: int = SELECTION_SAMPLE,
    seed: int = SEED,
) -> TopicCountChoice:
    """The K of ``candidates`` whose topics read best: spherical k-means with K topics on a seeded
    sample of at most ``sample_size`` reviews, each topic's ``COHERENCE_WORDS`` top words by
    class-based TF-IDF, scored by their mean NPMI coherence over the sample's reviews times their
    diversity (``topic_coherence``, ``topic_diversity``); the highest wins (ties within 1e-9: the
    smaller K). The mean cosine silhouette of each K is recorded too. Only the reviews are read
    (texts and embeddings): no labels, no planted truth."""
    from sklearn.metrics import silhouette_score

    started = time.perf_counter()
    if len(texts) != len(embeddings):
        raise ValueError(f"{len(texts)} texts for {len(embeddings)} embeddings")
    rows = _seeded_rows(len(embeddings), sample_size, seed)
    sample = np.asarray(embeddings, dtype=np.float32)[rows]
    usable = [k for k in sorted(set(candidates)) if 2 <= k <= len(sample) - 1]
    words = _word_counts([texts[i] for i in rows.tolist()])
    if not usable or words is None:
        raise MissingDataError(
            f"only {len(sample)} reviews to choose the number of topics from (need at least 3 with "
            "words): run the batch job (`churnfs features`) on the whole world, or set TOPIC_COUNT"
        )
    counts, _ = words
    present = counts.astype(np.float64)
    present.data[:] = 1.0  # a review holds the word or not
    # Unit rows: cosine distance is 1 - dot, computed once for every candidate's silhouette.
    unit = sample / np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
    distances = np.clip(1.0 - unit.astype(np.float64) @ unit.T.astype(np.float64), 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    scores: dict[int, float] = {}
    coherences: dict[int, float] = {}
    diversities: dict[int, float] = {}
    silhouettes: dict[int, float] = {}
    for k in usable:
        # One thread: on a few thousand reviews OpenMP's start-up and waits cost more than the
        # work (six times more on two busy cores), and the choice needs no speed-up.
        topics = _kmeans(sample, k, seed, threads=1).labels_
        if np.unique(topics).size < 2:  # duplicates: fewer distinct reviews than K
            continue
        tops = _top_word_indices(counts, topics, k, COHERENCE_WORDS)
        coherences[k] = topic_coherence(present, tops)
        diversities[k] = topic_diversity(tops)
        scores[k] = coherences[k] * diversities[k]
        silhouettes[k] = float(silhouette_score(distances, topics, metric="precomputed"))
    if not scores:
        raise MissingDataError("the reviews' embeddings are all identical: no topics to find")
    best = max(scores, key=lambda k: (round(scores[k], 9), -k))  # ties within 1e-9: the smaller K
    return TopicCountChoice(
        k=best,
        setting="auto",
        scores=scores,
        coherences=coherences,
        diversities=diversities,
        silhouettes=silhouettes,
        sample_reviews=len(sample),
        seconds=time.perf_counter() - started,
    )


def topic_diversity(tops: Sequence[Sequence[int]]) -> float:
    """Share of distinct words among all topics' top words (1: no topic repeats another's words;
    Dieng et al. 2020). Splitting a topic into two that keep its words lowers it."""
    listed = [word for top in tops for word in top]
    return len(set(listed)) / len(listed) if listed else 0.0


def _seeded_rows(n: int, size: int, seed: int) -> np.ndarray:
    """At most ``size`` of ``n`` row indices, a seeded sample kept in input order."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _kmeans(embeddings: np.ndarray, k: int, seed: int, threads: int | None = None) -> KMeans:
    """scikit-learn's k-means; ``threads`` caps its OpenMP and BLAS threads (None: all cores)."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return KMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=seed).fit(embeddings)


def fit_centroids(embeddings: np.ndarray, k: int, seed: int = SEED) -> np.ndarray:
    """Spherical k-means: k-means on unit vectors, centroids re-normalised to unit length.

    At most ``MAX_FIT_REVIEWS`` reviews (a seeded sample) take part: a dozen topics need no more,
    and the fit's time grows with them (38,000 reviews at 100,000 users: 13 s; 20,000: 6 s)."""
    sample = np.asarray(embeddings, dtype=np.float32)[_seeded_rows(len(embeddings), MAX_FIT_REVIEWS, seed)]
    centroids = _kmeans(sample, k, seed).cluster_centers_.astype(np.float32)
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def fit_topic_model(
    settings: Settings,
    embeddings: np.ndarray,
    texts: Sequence[str],
    embedding_model: str,
    backend: str,
    fitted_until: datetime,
) -> TopicModel:
    """Fit on the reviews before ``fitted_until`` (``embeddings`` and their ``texts``, in a fixed
    order: both engines pass them by user, time and review id) with K from
    ``settings.topic_count``, chosen by ``choose_topic_count`` under ``auto``, and save the
    result as the next version."""
    setting = settings.topic_count
    needed = MIN_FIT_REVIEWS if setting == "auto" else max(MIN_FIT_REVIEWS, int(setting))
    if len(embeddings) < needed:
        raise MissingDataError(
            f"only {len(embeddings)} reviews before {fitted_until:%Y-%m-%d} to fit the topic model "
            f"(need {needed}): run the batch job (`churnfs features`) on the whole world first"
        )
    if setting == "auto":
        choice = choose_topic_count(embeddings, texts)
        logger.info(
            "topic count %d chosen by %s on %d reviews in %.1f s: %s",
            choice.k,
            SELECTION_CRITERION,
            choice.sample_reviews,
            choice.seconds,
            ", ".join(f"{k}: {v:.3f}" for k, v in sorted(choice.scores.items())),
        )
    else:
        choice = TopicCountChoice(
            k=int(setting),
            setting=int(setting),
            scores={},
            coherences={},
            diversities={},
            silhouettes={},
            sample_reviews=0,
            seconds=0.0,
        )
    if len(embeddings) < WELL_FITTED_REVIEWS_PER_TOPIC * choice.k:
        logger.warning("topic model fitted on only %d reviews: topics will be noisy", len(embeddings))
    model = save_topic_model(
        settings,
        fit_centroids(embeddings, choice.k),
        embedding_model,
        backend,
        fitted_until,
        len(embeddings),
        k_selection=choice.as_metadata(),
    )
    logger.info(
        "topic model v%d (K=%d) fitted on %d reviews before %s",
        model.version,
        model.k,
        len(embeddings),
        fitted_until,
    )
    return model


def save_topic_model(
    settings: Settings,
    centroids: np.ndarray,
    embedding_model: str,
    backend: str,
    fitted_until: datetime,
    n_reviews: int,
    k_selection: dict[str, object] | None = None,
) -> TopicModel:
    """Save unit-row ``centroids`` as the next version ``topic_model/v<N>/`` (written to a staging
    folder, then renamed into place, so a reader never sees half a model). ``k_selection`` says
    how K was chosen (``TopicCountChoice.as_metadata``); None: by the caller."""
    centroids = np.asarray(centroids, dtype=np.float32)
    root = topic_model_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    versions = _versions(root)
    version = (versions[-1][0] + 1) if versions else 1
    metadata: dict[str, object] = {
        "k": int(centroids.shape[0]),
        "k_selection": k_selection or {"setting": int(centroids.shape[0]), "criterion": None},
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


def satisfies_topic_count(model: TopicModel, topic_count: int | str) -> bool:
    """Does ``model`` meet ``TOPIC_COUNT``: a forced K equal to its K, or under ``auto`` a K that
    the criterion chose (not one forced, nor one from before K was chosen)?"""
    if topic_count == "auto":
        selection = model.metadata.get("k_selection")
        return isinstance(selection, dict) and selection.get("setting") == "auto"
    return model.k == int(topic_count)


def current_topic_model(settings: Settings, embedding_model: str) -> TopicModel | None:
    """The newest saved version for ``embedding_model`` when it meets ``settings.topic_count``;
    None when a batch run has to fit one."""
    model = load_topic_model(settings, embedding_model)
    return model if model is not None and satisfies_topic_count(model, settings.topic_count) else None


def ensure_topic_model(
    settings: Settings,
    embeddings: np.ndarray,
    texts: Sequence[str],
    review_times_us: np.ndarray,
    embedding_model: str,
    backend: str,
    fitted_until: datetime,
    allow_fit: bool = True,
) -> TopicModel:
    """Load the current topic model for ``embedding_model`` (``current_topic_model``); fit and
    save one only when there is none (and ``allow_fit``), on the reviews (``embeddings`` and
    ``texts``) written before ``fitted_until``."""
    model = current_topic_model(settings, embedding_model)
    if model is not None:
        return model
    if not allow_fit:
        raise MissingDataError(
            f"no topic model for {embedding_model} with TOPIC_COUNT={settings.topic_count} under "
            f"{topic_model_root(settings)}: run the batch job (`churnfs features`) first"
        )
    before = np.flatnonzero(review_times_us < int(fitted_until.timestamp() * 1_000_000))
    return fit_topic_model(
        settings,
        embeddings[before],
        [str(texts[i]) for i in before.tolist()],
        embedding_model,
        backend,
        fitted_until,
    )
