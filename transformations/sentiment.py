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
- ``blend``: the mean of ``vader`` and ``prototype``. The two fail in different places (VADER on
  sentences without sentiment words and on some negation, the embedding on short emphatic
  sentences whose topic dominates the vector); it was the default until ``probe`` beat it.
- ``probe`` (the default): a supervised read-out of the same embedding: an L2-regularised
  logistic regression over the review's embedding plus its VADER score as one more feature. Its
  training pool (``probe_training_pool``) is real review text and hand-written text:

  - ``review_snippets.csv``: the VADER paper's real Amazon product-review sentences and Rotten
    Tomatoes movie-review snippets with 20 people's mean rating each (from the vaderSentiment
    sdist, MIT), labelled by the rating's sign where it is at least 1 of 4 either way; 30% of
    them, by Amazon review or movie snippet, are held out of every fit as the real-text
    evaluation (``read_snippets("held_out")``);
  - ``sentiment_train.csv``: 872 hand-written review sentences from 42 domains, 49% positive, with
    negation, mixed sentences and complaints without a sentiment word (no sentence or five-word
    run in common with the evaluation set or the generator's phrases).

  Each source weighs alike in the fit (the movie snippets would outweigh the rest seven to one).
  Fitted on polar sentences only, it has no reason to put plain factual text at 0, so its
  intercept is shifted until the neutral anchors' mean log-odds is 0 (the prototype method's
  zero; a constant shift keeps every ranking). The score is ``2 * sigmoid(log-odds) - 1``: one
  dot product per text on top of the embedding. The fit for the default model ships as
  ``sentiment_probe.json`` (``python -m transformations.sentiment fit``) and is used while its
  pool digest and settings are today's, so no process pays for embedding the 8,875 training
  sentences; another model is fitted at first use (about 20 s on 2 cores). The settings were
  chosen by 5-fold cross-validation on the training side only (``python -m bench.sentiment
  poolcv``; table in docs/benchmarks.md): the best mean over folds of the mean ROC-AUC on the
  three sources, over the pool, C in 0.1-100, VADER as a feature or not, and weighting::

      setting (CV, mean of per-source ROC-AUC)          mean    hand-written  Amazon  movie
      vader / blend (nothing fitted)                    0.797 / 0.856
      hand-written only, C=3 (the previous probe)       0.850   0.874         0.905   0.770
      all three sources, C=1, sources alike (chosen)    0.890   0.863         0.938   0.868
      all three sources, C=1, sentences alike           0.888   0.838         0.934   0.891

  Only then were the held-out snippets (first use) and the evaluation set
  (``tests/data/review_sentiment_eval.csv``, fourth use) scored (docs/benchmarks.md).

An empty or blank text scores 0 by every method. Everything is per text and deterministic for a
given encoder (model and backend), so the batch job, a refresh and a Spark bucket agree. The
embedding cache stores only the VADER part (``transformations.embeddings``); the method's score
is derived from it and the cached embedding when read, so switching methods never mixes scores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from churnfs.settings import Settings
    from transformations.embeddings import Encoder

SentimentMethod = Literal["vader", "prototype", "blend", "probe"]
SENTIMENT_METHODS: tuple[str, ...] = get_args(SentimentMethod)
DEFAULT_METHOD: SentimentMethod = "probe"

logger = logging.getLogger(__name__)

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


TRAINING_SET = Path(__file__).with_name("sentiment_train.csv")
"""Hand-written review sentences labelled positive or negative, the ``probe`` method's training
set: written apart from the evaluation set and the generator's phrases
(``tests/data/test_sentiment_train_set.py`` checks both)."""

PROBE_POOL: tuple[str, ...] = ("handwritten", "amazon", "movie")
"""What the probe is fitted on: the hand-written training set and the training split of the real
Amazon and movie snippets (``read_snippets("train")``)."""
PROBE_C = 1.0
"""Inverse L2 strength of the probe's logistic regression. Chosen with ``PROBE_POOL``,
``PROBE_WITH_VADER`` and ``PROBE_WEIGHTING`` by 5-fold cross-validation on the training side only
(``python -m bench.sentiment poolcv``): the best mean over folds of the mean ROC-AUC on the three
sources; see docs/benchmarks.md, "sentiment methods"."""
PROBE_WITH_VADER = True
"""Whether the VADER compound score is a feature beside the embedding."""
PROBE_WEIGHTING: Literal["sentence", "source"] = "source"
"""``source``: every source of the pool weighs alike in the fit, whatever its size (the movie
snippets would otherwise outweigh the rest seven to one); ``sentence``: every sentence alike."""
PROBE_CLASS_WEIGHT: Literal["balanced"] | None = None
"""scikit-learn's ``class_weight``; the pool is balanced within a few points."""
PROBE_STANDARDISE = False
"""Whether each feature is z-scored on the training rows before the fit (else the L2-normalised
embedding and VADER's score enter as they are)."""

PROBE_FILE = Path(__file__).with_name("sentiment_probe.json")
"""The probe fitted for the default model, shipped so that no process pays for embedding its
training pool (``python -m transformations.sentiment fit`` writes it). It is used for an encoder
of its model while its pool digest and settings are today's; otherwise the probe is fitted at
first use."""


def read_training_set(path: Path = TRAINING_SET) -> tuple[list[str], np.ndarray]:
    """Texts of the labelled training set and their labels (1 positive, 0 negative)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], np.asarray([r["label"] == "positive" for r in rows], dtype=np.int64)


REVIEW_SNIPPETS = Path(__file__).with_name("review_snippets.csv")
"""Real review text with people's ratings, from the data set of the VADER paper (Hutto & Gilbert,
ICWSM 2014) as the vaderSentiment 3.3.2 sdist ships it (MIT licence, ``review_snippets_LICENSE.txt``
beside this file): 3,708 Amazon product-review sentences from 309 reviews of five products
(Hu & Liu, 2004) and 10,605 Rotten Tomatoes movie-review snippets (Pang & Lee), each rated from -4
to +4 by 20 people; ``rating`` is their mean. Written out by ``python -m bench.sentiment snippets``."""

SNIPPET_POLARITY = 1.0
"""A snippet is labelled positive when its mean rating is at least this, negative when at most
minus this; the ones between (neutral or disputed) are left out."""

SNIPPET_HELD_OUT_SHARE = 0.3
"""The share of snippet groups (an Amazon review with all its sentences; a movie snippet) held
out from every fit: the real-text evaluation. Which group goes where is fixed by a hash of its
source and group, never by looking at scores."""

SnippetSplit = Literal["train", "held_out"]


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with labels (1 positive, 0 negative), the source each came from, and its group (the
    unit that never straddles two folds or splits)."""

    texts: list[str]
    labels: np.ndarray
    sources: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def unit_hash(salt: str, source: str, group: str) -> float:
    """A stable number in [0, 1) for a snippet group (``salt`` makes independent draws: the split,
    the benchmark's folds)."""
    digest = hashlib.sha256(f"{salt}\0{source}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def snippet_split(source: str, group: str) -> SnippetSplit:
    """Where a snippet group belongs: held out (about ``SNIPPET_HELD_OUT_SHARE`` of groups) or train."""
    return "held_out" if unit_hash("split", source, group) < SNIPPET_HELD_OUT_SHARE else "train"


def read_snippets(split: SnippetSplit, path: Path = REVIEW_SNIPPETS) -> LabelledTexts:
    """The labelled real snippets of one split (neutral ones left out, see ``SNIPPET_POLARITY``). A
    training snippet whose text also occurs in the held-out split is dropped, so no sentence is on
    both sides."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if abs(float(r["rating"])) >= SNIPPET_POLARITY]
    sides = [snippet_split(r["source"], r["group"]) for r in rows]
    held_out_texts = {r["text"] for r, side in zip(rows, sides, strict=True) if side == "held_out"}
    chosen = [
        r
        for r, side in zip(rows, sides, strict=True)
        if side == split and (split == "held_out" or r["text"] not in held_out_texts)
    ]
    return LabelledTexts(
        texts=[r["text"] for r in chosen],
        labels=np.asarray([float(r["rating"]) > 0 for r in chosen], dtype=np.int64),
        sources=np.asarray([r["source"] for r in chosen]),
        groups=np.asarray([r["group"] for r in chosen]),
    )


def probe_training_pool(pool: Sequence[str] = PROBE_POOL) -> LabelledTexts:
    """The probe's training texts: the hand-written set (source ``handwritten``) and the snippets'
    training split, of the sources ``pool`` names."""
    unknown = set(pool) - {"handwritten", "amazon", "movie"}
    if unknown:
        raise ValueError(f"unknown probe training sources: {sorted(unknown)}")
    texts, labels = read_training_set() if "handwritten" in pool else ([], np.zeros(0, dtype=np.int64))
    real = read_snippets("train")
    keep = np.isin(real.sources, list(pool))
    return LabelledTexts(
        texts=[*texts, *(t for t, k in zip(real.texts, keep, strict=True) if k)],
        labels=np.concatenate([labels, real.labels[keep]]),
        sources=np.concatenate([np.full(len(texts), "handwritten"), real.sources[keep]]),
        groups=np.concatenate([np.arange(len(texts)).astype(str), real.groups[keep]]),
    )


def source_weights(sources: np.ndarray) -> np.ndarray:
    """Sample weights under which every source weighs alike in total (the weights sum to the
    number of rows)."""
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    return len(sources) / (len(names) * counts[inverse])


def pool_digest(pool: LabelledTexts) -> str:
    """SHA-256 of the pool's sources, labels and texts, in order: what a shipped fit was made on."""
    digest = hashlib.sha256()
    for source, label, text in zip(pool.sources, pool.labels, pool.texts, strict=True):
        digest.update(f"{source}\0{int(label)}\0{text}\n".encode())
    return digest.hexdigest()


def probe_settings() -> dict[str, Any]:
    """Today's probe settings, as a shipped fit records them."""
    return {
        "pool": list(PROBE_POOL),
        "c": PROBE_C,
        "with_vader": PROBE_WITH_VADER,
        "weighting": PROBE_WEIGHTING,
        "class_weight": PROBE_CLASS_WEIGHT,
        "standardise": PROBE_STANDARDISE,
    }


def probe_features(embeddings: np.ndarray, vader: np.ndarray, with_vader: bool) -> np.ndarray:
    """The probe's input: the embedding rows, and VADER's score as one more column if asked."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if not with_vader:
        return embeddings
    return np.hstack([embeddings, np.asarray(vader, dtype=np.float64).reshape(-1, 1)])


@dataclass(frozen=True)
class SentimentProbe:
    """The probe method for one encoder: ``score = 2 * sigmoid(e @ weights + v * vader_weight +
    intercept) - 1``, a dot product per text on top of the embedding."""

    weights: np.ndarray  # float64 (dim,): on the L2-normalised embedding
    vader_weight: float  # 0 when VADER is not a feature
    intercept: float

    def logits(self, embeddings: np.ndarray, vader: np.ndarray) -> np.ndarray:
        """The regression's log-odds of positive for each text."""
        logit = np.asarray(embeddings, dtype=np.float64) @ self.weights
        return logit + self.vader_weight * np.asarray(vader, dtype=np.float64) + self.intercept

    def scores(self, embeddings: np.ndarray, vader: np.ndarray) -> np.ndarray:
        """Score of each text, in (-1, 1)."""
        return np.tanh(self.logits(embeddings, vader) / 2)  # 2 * sigmoid(z) - 1, without overflow


def fit_probe(
    embeddings: np.ndarray,
    vader: np.ndarray,
    labels: np.ndarray,
    c: float = PROBE_C,
    with_vader: bool = PROBE_WITH_VADER,
    class_weight: Literal["balanced"] | None = PROBE_CLASS_WEIGHT,
    standardise: bool = PROBE_STANDARDISE,
    sample_weight: np.ndarray | None = None,
) -> SentimentProbe:
    """An L2-regularised logistic regression of ``labels`` (1 positive) on the embeddings (and
    VADER's score), each column z-scored on the training rows first if ``standardise`` (folded
    back into the weights, so scoring stays one dot product); deterministic (lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    features = probe_features(embeddings, vader, with_vader)
    mean, scale = np.zeros(features.shape[1]), np.ones(features.shape[1])
    if standardise:
        mean, scale = features.mean(axis=0), features.std(axis=0)
        scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, class_weight=class_weight, max_iter=10_000)
    model.fit((features - mean) / scale, np.asarray(labels), sample_weight=sample_weight)
    coef = model.coef_[0].astype(np.float64) / scale
    intercept = float(model.intercept_[0]) - float(coef @ mean)
    dim = np.asarray(embeddings).shape[1]
    return SentimentProbe(
        weights=coef[:dim], vader_weight=float(coef[dim]) if with_vader else 0.0, intercept=intercept
    )


def fit_pool_probe(encoder: Encoder, pool: LabelledTexts | None = None) -> SentimentProbe:
    """The probe by today's settings, fitted on ``pool`` (default: ``probe_training_pool()``)
    embedded by ``encoder`` and centred on the neutral anchors."""
    pool = pool if pool is not None else probe_training_pool()
    weight = source_weights(pool.sources) if PROBE_WEIGHTING == "source" else None
    fitted = fit_probe(
        encoder.encode(pool.texts), vader_scores(pool.texts), pool.labels, sample_weight=weight
    )
    anchors = list(NEUTRAL_ANCHORS)
    return centred_on(fitted, encoder.encode(anchors), vader_scores(anchors))


def write_probe_file(encoder: Encoder, path: Path = PROBE_FILE) -> dict[str, Any]:
    """Fit the probe under ``encoder`` and write it to ``path`` with what it was fitted on."""
    pool = probe_training_pool()
    probe = fit_pool_probe(encoder, pool)
    record = {
        "model": encoder.model_name,
        "fitted_with_backend": encoder.backend,
        "settings": probe_settings(),
        "pool_sha256": pool_digest(pool),
        "sentences": {
            str(s): int(n) for s, n in zip(*np.unique(pool.sources, return_counts=True), strict=True)
        },
        "positive_share": round(float(pool.labels.mean()), 4),
        "intercept": probe.intercept,
        "vader_weight": probe.vader_weight,
        "weights": probe.weights.tolist(),
    }
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


@lru_cache(maxsize=1)
def shipped_probe_record(path: Path = PROBE_FILE) -> dict[str, Any] | None:
    """The shipped fit, if it is of today's pool and settings (read once per process); None and a
    warning if it is stale or missing."""
    if not path.exists():
        logger.warning("no shipped sentiment probe at %s: the probe will be fitted at first use", path)
        return None
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if record["settings"] != probe_settings() or record["pool_sha256"] != pool_digest(probe_training_pool()):
        logger.warning(
            "the shipped sentiment probe (%s) was fitted on other data or settings than today's: it will "
            "be fitted again at first use; run `python -m transformations.sentiment fit` to ship a new one",
            path,
        )
        return None
    return record


_PROBES: dict[tuple[str, str, str], SentimentProbe] = {}
_PROBES_LOCK = threading.Lock()


def sentiment_probe(encoder: Encoder) -> SentimentProbe:
    """The probe under ``encoder``: the shipped fit when it is of the encoder's model (any backend:
    the backends' vectors agree to a cosine of 0.9999, see transformations.embeddings) and still
    current; else fitted once per process and (model, backend, device) on the training pool
    embedded by that encoder (the same key as the prototype axis)."""
    key = (encoder.model_name, encoder.backend, encoder.device)
    with _PROBES_LOCK:
        probe = _PROBES.get(key)
        if probe is None:
            record = shipped_probe_record()
            if record is not None and record["model"] == encoder.model_name:
                probe = SentimentProbe(
                    weights=np.asarray(record["weights"], dtype=np.float64),
                    vader_weight=float(record["vader_weight"]),
                    intercept=float(record["intercept"]),
                )
            else:
                pool = probe_training_pool()
                logger.info(
                    "fitting the sentiment probe for %s (%s): embedding its %s training sentences once",
                    encoder.model_name,
                    encoder.backend,
                    f"{len(pool):,}",
                )
                probe = fit_pool_probe(encoder, pool)
            _PROBES[key] = probe
    return probe


def centred_on(probe: SentimentProbe, embeddings: np.ndarray, vader: np.ndarray) -> SentimentProbe:
    """``probe`` shifted so that the mean logit of these texts (the neutral anchors) is 0, as the
    prototype method places its zero: a probe fitted on positive and negative sentences alone
    has no reason to put plain factual text at 0, and monitoring counts scores <= -0.05 as
    negative. A constant shift of the logit keeps every ranking (ROC-AUC) as it was."""
    return replace(probe, intercept=probe.intercept - float(probe.logits(embeddings, vader).mean()))


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
    if not len(vader):
        scores = np.zeros(0)
    elif method == "probe":
        scores = sentiment_probe(encoder).scores(embeddings, vader)
    else:
        embedded = prototype_axis(encoder).scores(embeddings)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transformations.sentiment fit [--data-dir DIR] [--backend onnx]``: fit the probe
    for the settings' model and write ``PROBE_FILE`` (the ONNX export is cached under DIR)."""
    import argparse

    from churnfs.settings import Settings
    from transformations.embeddings import load_encoder

    parser = argparse.ArgumentParser(prog="python -m transformations.sentiment", description=main.__doc__)
    parser.add_argument("command", choices=["fit"])
    parser.add_argument("--data-dir", type=Path, default=None, help="where the encoder's export is cached")
    parser.add_argument(
        "--backend", default="onnx", help="embedding backend to fit with (default: onnx, fp32)"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"embedding_backend": args.backend, "embedding_device": "cpu"}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    encoder = load_encoder(Settings(**overrides))
    record = write_probe_file(encoder)
    total = sum(record["sentences"].values())
    logger.info(
        "wrote %s: %s on %s, %s sentences %s, pool sha256 %s",
        PROBE_FILE,
        encoder.model_name,
        encoder.backend,
        f"{total:,}",
        record["sentences"],
        record["pool_sha256"][:12],
    )
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
