"""Reviews: who writes them, when, the rating, and the composed English text.

Reviews are drawn day by day, causally: some users (writers) review a share of their own events
within two days of each, so active users write more; and while a user's satisfaction is falling
they write a complaint now and then. Nothing about a review depends on what happens after it is
written. A review's rating follows the writer's satisfaction at the time
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
from datagen.population import ColumnBatch, Population, days_to_us

WRITER_SHARE = 0.22  # users who ever review an event
REVIEW_RATE_PER_EVENT = 0.021  # mean chance, over all users, that an event prompts a review
REVIEW_DELAY_DAYS = 2.0  # a review follows its event within this many days
COMPLAINTS_PER_FALLING_DAY = 0.025  # complaint rate while satisfaction falls (~half write one)
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


_POPULARITY = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 1.05
_PRODUCT_POPULARITY = _POPULARITY / _POPULARITY.sum()


def review_rates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Each user's chance of reviewing any one of their events: ``WRITER_SHARE`` of users write,
    with a heavy-tailed personal rate; the others never do. Active users therefore write more."""
    writer = rng.random(n) < WRITER_SHARE
    rate = REVIEW_RATE_PER_EVENT / WRITER_SHARE * np.exp(rng.normal(-0.32, 0.8, n))
    return np.where(writer, np.minimum(rate, 0.9), 0.0)


@dataclass
class Reviews(ColumnBatch):
    """Reviews of one or more days, with their truth (primary aspect and tone)."""

    user_index: np.ndarray
    timestamp_us: np.ndarray
    product_id: np.ndarray
    rating: np.ndarray
    text: np.ndarray  # object
    helpful_votes: np.ndarray
    total_votes: np.ndarray
    aspect: np.ndarray
    tone: np.ndarray


def sample_day_reviews(
    rng: np.random.Generator, pop: Population, events: Events, spec: WorldSpec, drift: bool, day: int
) -> Reviews:
    """The reviews prompted by the events of sessions that started on ``day`` (written within two
    days after the event), and the complaints written on ``day`` by users whose satisfaction is
    falling. Drawn from this day's stream and the writers' state at the time of writing; reviews
    past the writer's churn or the world's end are still returned (the caller drops them)."""
    # Ordinary reviews: each event prompts one with the user's own review rate.
    prompted = rng.random(events.n) < pop.review_rate[events.user_index]
    ordinary_user = events.user_index[prompted]
    ordinary_day = events.day[prompted] + rng.random(len(ordinary_user)) * REVIEW_DELAY_DAYS

    # Complaints: while satisfaction falls, a user writes one now and then.
    rows, lo, hi = pop.alive_on_day(day)
    falling = pop.paths.falling_at(rows, day + 0.5)
    n_complaints = rng.poisson(COMPLAINTS_PER_FALLING_DAY * falling * (hi - lo))
    complaint_user = np.repeat(rows, n_complaints)
    complaint_day = np.repeat(lo, n_complaints) + rng.random(len(complaint_user)) * np.repeat(
        hi - lo, n_complaints
    )

    user = np.concatenate([ordinary_user, complaint_user])
    when = np.concatenate([ordinary_day, complaint_day])
    r = len(user)
    satisfaction = pop.paths.at(user, when)
    rating = np.clip(np.round(0.6 + 5.0 * satisfaction + rng.normal(0.0, 0.7, r)), 1, 5).astype(np.int64)
    aspect_u = rng.random(r)
    hit_u = rng.random(r)
    delivery_problem = drift & (when >= spec.drift_start_day) & (hit_u < DRIFT_DELIVERY_SHARE)
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
    product_id = rng.choice(N_PRODUCTS, size=r, p=_PRODUCT_POPULARITY) + 1
    return Reviews(
        user_index=user,
        timestamp_us=days_to_us(spec, when),
        product_id=product_id.astype(np.int64),
        rating=rating,
        text=text,
        helpful_votes=helpful_votes.astype(np.int64),
        total_votes=total_votes.astype(np.int64),
        aspect=aspect,
        tone=tone,
    )


def review_tables(reviews: Reviews, pop: Population) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The review table and its truth, in time order, numbered from 1."""
    order = np.argsort(reviews.timestamp_us, kind="stable")
    r = reviews.take(order)
    review_id = np.arange(1, len(order) + 1, dtype=np.int64)
    table = pd.DataFrame(
        {
            "review_id": review_id,
            "user_id": pop.user_id[r.user_index],
            "product_id": r.product_id,
            "review_timestamp": pd.to_datetime(r.timestamp_us, unit="us", utc=True),
            "rating": r.rating,
            "review_text": r.text,
            "helpful_votes": r.helpful_votes,
            "total_votes": r.total_votes,
        }
    )
    truth = pd.DataFrame(
        {
            "review_id": review_id,
            "aspect": np.asarray(ASPECTS, dtype=object)[r.aspect],
            "tone": np.asarray(TONES, dtype=object)[r.tone],
        }
    )
    return table, truth


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
