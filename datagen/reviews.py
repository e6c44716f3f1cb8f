"""Reviews: who writes them, when, the rating, and the composed English text.

Active users write more reviews, and some users write one while their satisfaction is falling
(a complaint). A review's rating follows the writer's satisfaction on the day
of writing; its tone follows the rating (1-2 negative, 3 neutral, 4-5 positive). The text is
composed from sentence fragments: most sentences are about one primary aspect, optionally one
about a secondary aspect, between a tone-matched opener and closer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnfs.world import WorldSpec
from datagen.events import Events
from datagen.phrases import (
    ASPECT_SENTENCES,
    ASPECTS,
    CLOSERS,
    CONNECTORS,
    OPENERS,
    PRODUCTS,
    SENTENCES_PER_CELL,
    TONES,
)
from datagen.population import Population, days_to_us

REVIEWER_SHARE = 0.16  # share of all users who write at least one ordinary review
REVIEWS_PER_USER = 0.6  # reviews per user, over all users, complaints included
COMPLAINT_SHARE = 0.5  # share of declining users who write a review while their satisfaction falls
N_PRODUCTS = 3000
MIN_WORDS, MAX_WORDS = 15, 60
DRIFT_DELIVERY_SHARE = 0.6  # share of drift-period reviews hit by the delivery problem
NEGATIVE, NEUTRAL, POSITIVE = range(3)
DELIVERY = ASPECTS.index("delivery")

# P(primary aspect | tone): complaints lean to support, delivery and returns; praise to quality, price.
ASPECT_GIVEN_TONE = np.array(
    [
        [0.20, 0.14, 0.20, 0.20, 0.13, 0.13],
        [0.17, 0.17, 0.18, 0.16, 0.16, 0.16],
        [0.17, 0.21, 0.26, 0.12, 0.15, 0.09],
    ]
)


@dataclass(frozen=True)
class _Fragments:
    """Sentence fragments as arrays, split around the product noun."""

    prefix: np.ndarray  # object: text before {p} (or the whole sentence)
    prefix_lower: np.ndarray  # same with the first letter lower-cased, for after a connector
    suffix: np.ndarray  # object: text after {p}
    has_product: np.ndarray  # bool
    words: np.ndarray  # int64 words, not counting the product noun


def _fragments(sentences: list[str]) -> _Fragments:
    prefix, lower, suffix, has, words = [], [], [], [], []
    for sentence in sentences:
        before, marker, after = sentence.partition("{p}")
        prefix.append(before)
        keep_capital = before.startswith(("I ", "I'"))
        lower.append(before if keep_capital else before[:1].lower() + before[1:])
        suffix.append(after)
        has.append(bool(marker))
        words.append(len(before.split()) + len(after.split()))
    return _Fragments(
        prefix=np.asarray(prefix, dtype=object),
        prefix_lower=np.asarray(lower, dtype=object),
        suffix=np.asarray(suffix, dtype=object),
        has_product=np.asarray(has, dtype=bool),
        words=np.asarray(words, dtype=np.int64),
    )


def _aspect_fragments() -> _Fragments:
    """Flat table: index ``(aspect * 3 + tone) * SENTENCES_PER_CELL + k``."""
    sentences: list[str] = []
    for aspect in ASPECTS:
        for tone in TONES:
            cell = ASPECT_SENTENCES[aspect][tone]
            if len(cell) != SENTENCES_PER_CELL:
                raise ValueError(f"{aspect}/{tone} needs {SENTENCES_PER_CELL} sentences, has {len(cell)}")
            sentences.extend(cell)
    return _fragments(sentences)


def _tone_fragments(table: dict[str, tuple[str, ...]]) -> tuple[_Fragments, int]:
    per_tone = len(table[TONES[0]])
    return _fragments([s for tone in TONES for s in table[tone]]), per_tone


def _solve_scale(score: np.ndarray, target_mean: float, cap: float) -> float:
    """The factor ``a`` with ``mean(clip(a * score, 0, cap)) == target_mean`` (bisection)."""
    lo, hi = 0.0, 1.0
    while np.clip(hi * score, 0, cap).mean() < target_mean and hi < 1e9:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.clip(mid * score, 0, cap).mean() < target_mean:
            lo = mid
        else:
            hi = mid
    return hi


def sample_reviews(
    rng: np.random.Generator, pop: Population, events: Events, spec: WorldSpec, drift: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The review table and its truth (primary aspect and tone per review)."""
    n = pop.n
    window = spec.window_days
    n_events = np.bincount(events.user_index, minlength=n)
    activity = np.sqrt(n_events.astype(np.float64))

    # Complaints: some users whose satisfaction is falling write a review while it falls.
    paths = pop.paths
    reached_floor = paths.decline_start + (paths.base - paths.floor) / paths.rate
    declines = np.isfinite(paths.decline_start)
    falling_days = np.zeros(n)
    falling_days[declines] = reached_floor[declines] - paths.decline_start[declines]
    complaint_day = paths.decline_start + rng.random(n) * falling_days
    user_limit = np.minimum(pop.churn_day, float(window))
    complains = (rng.random(n) < COMPLAINT_SHARE) & declines
    complains &= (complaint_day >= np.maximum(pop.signup_day, 0.0)) & (complaint_day < user_limit)
    complaint_user = np.nonzero(complains)[0]

    # Ordinary reviews: who writes and how many both grow with activity; no events, no review.
    cap = 0.95
    p_writer = np.clip(_solve_scale(activity, REVIEWER_SHARE, cap) * activity, 0.0, cap)
    writer = rng.random(n) < p_writer
    wanted = max(REVIEWS_PER_USER * n - len(complaint_user), 0.0)
    extra_mean = max(wanted / max(writer.sum(), 1) - 1.0, 0.0)
    extra_rate = extra_mean * activity / max(activity[writer].mean() if writer.any() else 1.0, 1e-9)
    count = np.where(writer, 1 + rng.poisson(extra_rate), 0)
    ordinary_user = np.repeat(np.arange(n), count)
    r_ordinary = len(ordinary_user)

    # When: shortly after one of the writer's own events, before churn and the window's end.
    by_user = np.argsort(events.user_index, kind="stable")
    first = np.zeros(n, dtype=np.int64)
    np.cumsum(n_events[:-1], out=first[1:])
    pick = by_user[
        first[ordinary_user] + np.floor(rng.random(r_ordinary) * n_events[ordinary_user]).astype(np.int64)
    ]
    delay = rng.random(r_ordinary) * np.minimum(2.0, user_limit[ordinary_user] - events.day[pick])

    user = np.concatenate([ordinary_user, complaint_user])
    day = np.concatenate([events.day[pick] + delay, complaint_day[complaint_user]])
    r = len(user)
    limit = user_limit[user]
    timestamp_us = np.minimum(days_to_us(spec, day), days_to_us(spec, limit) - 1)
    day_index = np.minimum(np.floor(day).astype(np.int64), window - 1)
    satisfaction = pop.satisfaction[user, day_index].astype(np.float64)

    rating = np.clip(np.round(0.6 + 5.0 * satisfaction + rng.normal(0.0, 0.7, r)), 1, 5).astype(np.int64)
    aspect_u = rng.random(r)
    hit_u = rng.random(r)
    delivery_problem = drift & (day >= spec.drift_start_day) & (hit_u < DRIFT_DELIVERY_SHARE)
    rating = np.where(delivery_problem, np.maximum(rating - 2, 1), rating)
    tone = np.where(rating <= 2, NEGATIVE, np.where(rating == 3, NEUTRAL, POSITIVE))
    cdf = np.cumsum(ASPECT_GIVEN_TONE, axis=1)[tone]
    aspect = np.minimum((aspect_u[:, None] * cdf[:, -1:] >= cdf).sum(axis=1), len(ASPECTS) - 1)
    aspect = np.where(delivery_problem, DELIVERY, aspect)

    text, words = _compose_texts(rng, aspect, tone)

    total_votes = rng.poisson(np.exp(rng.normal(0.2, 1.0, r)))
    extreme = (rating == 1) | (rating == 5)
    helpful_p = np.clip(0.45 + 0.15 * extreme + 0.1 * (words > 35), 0.0, 0.95)
    helpful_votes = rng.binomial(total_votes, helpful_p)
    popularity = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 1.05
    product_id = rng.choice(N_PRODUCTS, size=r, p=popularity / popularity.sum()) + 1

    order = np.argsort(timestamp_us, kind="stable")
    review_id = np.arange(1, r + 1, dtype=np.int64)
    reviews = pd.DataFrame(
        {
            "review_id": review_id,
            "user_id": pop.user_id[user[order]],
            "product_id": product_id[order].astype(np.int64),
            "review_timestamp": pd.to_datetime(timestamp_us[order], unit="us", utc=True),
            "rating": rating[order],
            "review_text": text[order],
            "helpful_votes": helpful_votes[order].astype(np.int64),
            "total_votes": total_votes[order].astype(np.int64),
        }
    )
    truth = pd.DataFrame(
        {
            "review_id": review_id,
            "aspect": np.asarray(ASPECTS, dtype=object)[aspect[order]],
            "tone": np.asarray(TONES, dtype=object)[tone[order]],
        }
    )
    return reviews, truth


def _compose_texts(
    rng: np.random.Generator, aspect: np.ndarray, tone: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Compose each review: [opener] primary primary [primary] [secondary] [closer], with the
    optional secondary sentence sometimes right after the first primary one. Returns the texts
    (object array) and their word counts."""
    r = len(aspect)
    k = SENTENCES_PER_CELL
    frag = _aspect_fragments()
    openers, per_opener = _tone_fragments(OPENERS)
    closers, per_closer = _tone_fragments(CLOSERS)
    products = np.asarray(PRODUCTS, dtype=object)
    product_words = np.asarray([len(p.split()) for p in PRODUCTS])
    connectors = np.asarray(CONNECTORS, dtype=object)
    connector_words = np.asarray([len(c.split()) for c in CONNECTORS])

    cell = (aspect * len(TONES) + tone) * k
    picks = rng.random((r, k)).argsort(axis=1)[:, :3]
    primary = cell[:, None] + picks
    second_aspect = (aspect + 1 + rng.integers(0, len(ASPECTS) - 1, r)) % len(ASPECTS)
    second_tone = np.where(rng.random(r) < 0.75, tone, rng.integers(0, len(TONES), r))
    secondary = (second_aspect * len(TONES) + second_tone) * k + rng.integers(0, k, r)
    opener = tone * per_opener + rng.integers(0, per_opener, r)
    closer = tone * per_closer + rng.integers(0, per_closer, r)
    connector = rng.integers(0, len(CONNECTORS), r)
    product = rng.integers(0, len(PRODUCTS), r)

    use_opener = rng.random(r) < 0.6
    use_third = rng.random(r) < 0.4
    use_secondary = rng.random(r) < 0.45
    use_connector = rng.random(r) < 0.6
    secondary_early = rng.random(r) < 0.3
    use_closer = rng.random(r) < 0.55

    def words_of(f: _Fragments, idx: np.ndarray) -> np.ndarray:
        return f.words[idx] + f.has_product[idx] * product_words[product]

    w_open = openers.words[opener]
    w_p = [words_of(frag, primary[:, j]) for j in range(3)]
    w_sec = words_of(frag, secondary) + use_connector * connector_words[connector]
    w_close = closers.words[closer]

    def total() -> np.ndarray:
        return (
            use_opener * w_open
            + w_p[0]
            + w_p[1]
            + use_third * w_p[2]
            + use_secondary * w_sec
            + use_closer * w_close
        )

    # Grow short texts and trim long ones, one optional sentence at a time.
    for flag in ("third", "closer", "opener", "secondary"):
        short = total() < MIN_WORDS
        if flag == "third":
            use_third |= short
        elif flag == "closer":
            use_closer |= short
        elif flag == "opener":
            use_opener |= short
        else:
            use_secondary |= short
    for flag in ("secondary", "opener", "closer", "third"):
        long = total() > MAX_WORDS
        if flag == "secondary":
            use_secondary &= ~long
        elif flag == "opener":
            use_opener &= ~long
        elif flag == "closer":
            use_closer &= ~long
        else:
            use_third &= ~long

    def sentence(f: _Fragments, idx: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
        head = f.prefix[idx] if lower is None else np.where(lower, f.prefix_lower[idx], f.prefix[idx])
        noun = np.where(f.has_product[idx], products[product], "")
        return head + noun + f.suffix[idx]

    empty = np.full(r, "", dtype=object)
    second = np.where(use_connector, connectors[connector], empty) + sentence(frag, secondary, use_connector)
    parts = [
        (use_opener, openers.prefix[opener]),
        (np.ones(r, dtype=bool), sentence(frag, primary[:, 0])),
        (use_secondary & secondary_early, second),
        (np.ones(r, dtype=bool), sentence(frag, primary[:, 1])),
        (use_third, sentence(frag, primary[:, 2])),
        (use_secondary & ~secondary_early, second),
        (use_closer, closers.prefix[closer]),
    ]
    text = empty
    for include, part in parts:
        text = np.where(include, np.where(text == "", part, text + " " + part), text)
    return text, total()
