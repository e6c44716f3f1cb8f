"""The review feature groups: per user and as-of time, stats, sentiment and mean topic
distribution of the reviews written strictly before that time (``user_review_features``), and
the mean review embedding (``user_review_embeddings``).

One function serves the batch job (every user, every as-of time) and the single-user refresh
(one user's rows, one as-of time). Per review it needs an embedding and a sentiment score
(``transformations.embeddings``, cached) and a topic distribution (``transformations.topics``,
a saved model that is loaded, never refitted, once it exists). Per (user, as-of) every feature
is a difference of cumulative sums over the user's reviews sorted by time, cut where
``searchsorted`` puts the as-of time: no Python loop over users or rows.

The 384-float embedding is event-sourced: ``user_review_embeddings`` holds a row for a user at
their first as-of time and then only at the as-of times where their set of reviews changed, and
its feature view has no TTL, so Feast's point-in-time join (latest row at or before t) gives the
same value a weekly snapshot would. At 100,000 users that is about 155,000 rows instead of 2.3
million (600 MB less to write on every run; the snapshot group keeps the short topic vector).

Users with no review before the as-of time get ``has_reviews`` false, 0 for counts, means and
sentiments, an all-zero ``topic_vector`` and ``review_embedding``, and ``last_review_days`` =
days since signup (like ``last_active_days`` in the activity group).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from churnfs.errors import SchemaError
from churnfs.settings import Settings
from churnfs.world import load_world_spec
from transformations.embeddings import Encoder, load_encoder, matrix_to_list_array, review_vectors
from transformations.topics import ensure_topic_model

logger = logging.getLogger(__name__)

RECENT_REVIEWS = 3
"""``recent_sentiment`` averages the latest this-many reviews before the as-of time."""
US_PER_DAY = 86_400 * 1_000_000
REVIEW_COLUMNS = (
    "review_id",
    "user_id",
    "review_timestamp",
    "rating",
    "review_text",
    "helpful_votes",
    "total_votes",
)
FEATURES: tuple[str, ...] = (
    "has_reviews",
    "total_reviews",
    "avg_rating",
    "avg_helpful_ratio",
    "avg_text_length",
    "last_review_days",
    "sentiment_score",
    "recent_sentiment",
    "topic_vector",
)
"""Columns of ``user_review_features`` (one row per user and as-of time)."""
EMBEDDING_FEATURES: tuple[str, ...] = ("review_embedding",)
"""Columns of ``user_review_embeddings`` (a row when a user's embedding changes)."""


@dataclass(frozen=True)
class ReviewFeatureTables:
    """The two outputs of the review group, each ordered by as-of time, then user."""

    snapshots: pd.DataFrame
    """``user_id``, ``event_timestamp`` and ``FEATURES`` for every (user, as-of time)."""
    embeddings: pd.DataFrame
    """``user_id``, ``event_timestamp`` and ``review_embedding``: each user's first as-of time and
    every as-of time at which their mean embedding changed."""


def _timestamps_us(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Microseconds since the epoch of timezone-aware timestamps (naive ones are refused)."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        raise SchemaError("review and signup timestamps must be timezone-aware UTC")
    return np.asarray(index.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)


def _as_of_us(as_of_times: Sequence[datetime]) -> np.ndarray:
    if any(t.tzinfo is None for t in as_of_times):
        raise ValueError("as-of times must be timezone-aware (UTC)")
    return np.unique(_timestamps_us(pd.DatetimeIndex(list(as_of_times))))


def _list_array(matrix: np.ndarray) -> pd.Series:
    """A (rows, d) float32 matrix as an Arrow-backed list<float32> column (no per-row objects)."""
    return pd.Series(matrix_to_list_array(matrix), dtype=pd.ArrowDtype(pa.list_(pa.float32())))


def build_review_features(
    reviews: pd.DataFrame,
    users: pd.DataFrame,
    as_of_times: Sequence[datetime],
    settings: Settings,
    show_progress: bool = True,
    encoder: Encoder | None = None,
    fit_topics: bool | None = None,
    compact_cache: bool = True,
) -> ReviewFeatureTables:
    """Review features for every (user signed up before the as-of time, as-of time), and the
    event-sourced mean embeddings.

    Args:
        reviews: clean ``review_table`` rows (validated at the edge).
        users: ``user_id`` and ``signup_date`` of the users to build rows for.
        as_of_times: timezone-aware snapshot times; only reviews strictly before each count.
        settings: the embedding model/backend settings and ``artifacts_dir`` (cache, topic model).
        show_progress: a progress bar (reviews/s) while embedding.
        encoder: an already loaded encoder (default: the one ``settings`` names, loaded once).
        fit_topics: may a missing topic model be fitted here? Default: only when building for
            more than one user, so a single-user refresh never fits topics on one user's reviews.
        compact_cache: merge the embedding cache's part files when there are many (False while
            other processes, e.g. Spark workers, append to the same cache).

    Returns:
        The snapshots and the embedding rows (``ReviewFeatureTables``), ``event_timestamp`` being
        the as-of time (UTC).
    """
    missing = [c for c in REVIEW_COLUMNS if c not in reviews.columns]
    if missing:
        raise SchemaError(f"review rows lack column(s) {', '.join(missing)}")
    times = _as_of_us(as_of_times)

    # Rows: every user signed up strictly before the as-of time.
    user_ids = users["user_id"].to_numpy(dtype=np.int64)
    signup = _timestamps_us(users["signup_date"])
    by_id = np.argsort(user_ids, kind="stable")
    user_ids, signup = user_ids[by_id], signup[by_id]
    member = signup[None, :] < times[:, None]
    # Time-major: rows come ordered by as-of time, then user, the offline store's own order, so
    # the writer need not re-sort (a copy of every 384-float row) before writing.
    row_time, row_user = np.nonzero(member)
    row_as_of = times[row_time]

    # Reviews of those users, sorted by (user, time, id).
    review_user = reviews["user_id"].to_numpy(dtype=np.int64)
    known = np.isin(review_user, user_ids)
    frame = reviews.loc[known]
    review_ts = _timestamps_us(frame["review_timestamp"])
    review_pos = np.searchsorted(user_ids, review_user[known])
    order = np.lexsort((frame["review_id"].to_numpy(dtype=np.int64), review_ts, review_pos))
    frame = frame.iloc[order]
    review_ts, review_pos = review_ts[order], review_pos[order]

    encoder = encoder or load_encoder(settings)
    vectors = review_vectors(frame, settings, encoder, show_progress=show_progress, compact=compact_cache)
    spec = load_world_spec(settings.raw_dir)
    topic_model = ensure_topic_model(
        settings,
        vectors.embeddings,
        frame["review_text"].fillna("").astype(str).tolist(),
        review_ts,
        encoder.model_name,
        encoder.backend,
        spec.train_end,
        allow_fit=len(user_ids) > 1 if fit_topics is None else fit_topics,
    )
    topics = topic_model.transform(vectors.embeddings)

    # Where each (user, as-of) row cuts its user's sorted reviews: [start, end).
    # Rank every time in one ordering so (user, time) becomes one sortable integer key.
    all_times = np.unique(np.concatenate([review_ts, times]))
    span = np.int64(len(all_times) + 1)
    review_key = review_pos.astype(np.int64) * span + np.searchsorted(all_times, review_ts)
    row_key = row_user.astype(np.int64) * span + np.searchsorted(all_times, row_as_of)
    end = np.searchsorted(review_key, row_key, side="left")  # strictly before the as-of time
    start = np.searchsorted(review_key, row_user.astype(np.int64) * span, side="left")
    count = end - start
    has = count > 0
    safe = np.maximum(count, 1)

    def window_mean(values: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Mean of ``values`` over each row's reviews ``[lo, end)`` (0 where empty)."""
        cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
        n = end - lo
        return np.where(n > 0, (cumulative[end] - cumulative[lo]) / np.maximum(n, 1), 0.0)

    total_votes = frame["total_votes"].to_numpy(dtype=np.float64)
    helpful_ratio = np.divide(
        frame["helpful_votes"].to_numpy(dtype=np.float64),
        total_votes,
        out=np.zeros(len(frame)),
        where=total_votes > 0,
    )
    words = np.fromiter(
        (len(text.split()) for text in frame["review_text"].astype(str)), dtype=np.float64, count=len(frame)
    )
    last_ts = np.where(has, review_ts[np.maximum(end - 1, 0)] if len(review_ts) else 0, signup[row_user])

    out = pd.DataFrame(
        {
            "user_id": user_ids[row_user],
            "event_timestamp": pd.to_datetime(row_as_of, unit="us", utc=True),
            "has_reviews": has,
            "total_reviews": count.astype(np.int64),
            "avg_rating": window_mean(frame["rating"].to_numpy(dtype=np.float64), start),
            "avg_helpful_ratio": window_mean(helpful_ratio, start),
            "avg_text_length": window_mean(words, start),
            "last_review_days": (row_as_of - last_ts) / US_PER_DAY,
            "sentiment_score": window_mean(vectors.sentiment, start),
            "recent_sentiment": window_mean(vectors.sentiment, np.maximum(start, end - RECENT_REVIEWS)),
        }
    )
    out["topic_vector"] = _list_array(_matrix_means(topics, start, end, has, safe))

    # Embedding rows: a user's first as-of row, then each row whose review window moved on.
    by_user = np.lexsort((row_time, row_user))
    changed = np.ones(len(row_user), dtype=bool)
    same_user = row_user[by_user][1:] == row_user[by_user][:-1]
    changed[by_user[1:]] = ~same_user | (end[by_user][1:] != end[by_user][:-1])
    keep = np.flatnonzero(changed)  # still in (as-of time, user) order
    embeddings = pd.DataFrame(
        {
            "user_id": user_ids[row_user[keep]],
            "event_timestamp": pd.to_datetime(row_as_of[keep], unit="us", utc=True),
        }
    )
    embeddings["review_embedding"] = _list_array(
        _matrix_means(vectors.embeddings, start[keep], end[keep], has[keep], safe[keep])
    )
    logger.info(
        "review features: %d rows (%d with reviews), %d embedding rows, %d reviews, topic model v%d",
        len(out),
        int(has.sum()),
        len(embeddings),
        len(frame),
        topic_model.version,
    )
    return ReviewFeatureTables(snapshots=out, embeddings=embeddings)


def _matrix_means(
    matrix: np.ndarray, start: np.ndarray, end: np.ndarray, has: np.ndarray, safe: np.ndarray
) -> np.ndarray:
    """Row-wise mean of ``matrix[start:end]`` per output row, float32, zeros where empty.

    Cumulative sums in float64 (so long histories do not lose precision), evaluated in blocks of
    output rows to bound the temporary memory."""
    dim = matrix.shape[1] if matrix.ndim == 2 else 0
    out = np.zeros((len(start), dim), dtype=np.float32)
    rows = np.flatnonzero(has)
    if rows.size == 0:
        return out
    cumulative = np.zeros((len(matrix) + 1, dim), dtype=np.float64)
    np.cumsum(matrix, axis=0, dtype=np.float64, out=cumulative[1:])
    block = 65_536
    for begin in range(0, rows.size, block):
        r = rows[begin : begin + block]
        out[r] = ((cumulative[end[r]] - cumulative[start[r]]) / safe[r, None]).astype(np.float32)
    return out
