"""Sessions and events, drawn from the users' satisfaction paths, and their JSON metadata.

Everything is vectorised over a users x days grid (sessions per day are Poisson) and then over
sessions and events; the metadata strings are assembled column-wise with Arrow compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnfs.world import EVENT_TYPES, WorldSpec
from datagen.population import DEVICES, Population, categorical_draw, days_to_us

PAGE_VIEW, SEARCH, ADD_TO_CART, PURCHASE, WISHLIST, SUPPORT_CONTACT = range(6)
PRICED_TYPES = (ADD_TO_CART, PURCHASE, WISHLIST)

CATEGORIES: tuple[str, ...] = (
    "electronics",
    "fashion",
    "home",
    "beauty",
    "sports",
    "books",
    "toys",
    "grocery",
    "garden",
    "automotive",
)
CATEGORY_BASE_PRICE = np.array([180.0, 55.0, 70.0, 28.0, 60.0, 18.0, 30.0, 12.0, 45.0, 90.0])

EVENTS_PER_USER = 24.0  # target mean over all users (heavy-tailed per user)
REGULAR_SESSION_SHAPE = 1.2  # negative binomial shape of (length - 1): a few events, tail to ~20
REGULAR_SESSION_MEAN_EXTRA = 3.4
MAX_SESSION_EVENTS = 30
SUPPORT_LEVEL_RATE = 0.08  # support sessions per day at full dissatisfaction (z = 1), times z**4
SUPPORT_DECLINE_RATE = 0.2  # extra support sessions per day while satisfaction is falling
SUPPORT_SESSION_SECOND_EVENT = 0.3  # a support session is a contact, sometimes followed by a page view
GAP_MEDIAN_SECONDS = 35.0
DRIFT_ANDROID_SHARE = 0.5  # share of events in the drift period that come from the new Android app

# Diurnal profile of session starts (UTC hour weights).
HOUR_WEIGHTS = np.array(
    [2, 1.5, 1, 1, 1, 1.5, 2.5, 4, 5, 5.5, 6, 6, 6.5, 6.5, 6, 6, 6.5, 7, 8, 8.5, 8, 6.5, 4.5, 3],
    dtype=np.float64,
)
# Weekly profile (the window starts on a Monday): weekends busier.
WEEKDAY_WEIGHTS = np.array([0.95, 0.95, 0.95, 0.97, 1.0, 1.12, 1.1])

DIRTY_METADATA = ('{"category": "home", "device": ', "N/A", "{category: books}", "", "null}")


@dataclass
class Events:
    """Clean events in time order, plus what the review writer needs."""

    user_index: np.ndarray  # int64 row in Population (user_id - 1)
    session_id: np.ndarray  # int64
    day: np.ndarray  # float64 days from start
    timestamp_us: np.ndarray  # int64
    event_type: np.ndarray  # int8 index into EVENT_TYPES
    category: np.ndarray  # int8 index into CATEGORIES
    device: np.ndarray  # int8 index into DEVICES
    duration_tenths: np.ndarray  # int64 tenths of a second
    price_cents: np.ndarray  # int64 cents (meaningful on priced types)

    @property
    def n(self) -> int:
        return len(self.day)


def sample_events(rng: np.random.Generator, pop: Population, spec: WorldSpec, drift: bool) -> Events:
    """Draw sessions per user-day from the satisfaction path, then the events inside them."""
    window = spec.window_days
    exposure = pop.alive_exposure()
    s = pop.satisfaction
    z = 1.0 - s

    weekday = WEEKDAY_WEIGHTS[np.arange(window) % 7].astype(np.float32)
    regular = (pop.activity_rate.astype(np.float32)[:, None] * (s / 0.8) ** 4) * weekday[None, :] * exposure
    falling = pop.paths.falling_on_grid(window)
    support = ((SUPPORT_LEVEL_RATE * z**4 + SUPPORT_DECLINE_RATE * falling) * exposure).astype(np.float32)
    del falling
    del exposure
    regular_len = 1.0 + REGULAR_SESSION_MEAN_EXTRA
    support_len = 1.0 + SUPPORT_SESSION_SECOND_EVENT
    expected_support = float(support.sum(dtype=np.float64)) * support_len
    wanted_regular = max(EVENTS_PER_USER * pop.n - expected_support, 0.0)
    regular *= np.float32(wanted_regular / max(float(regular.sum(dtype=np.float64)) * regular_len, 1e-9))

    reg_user, reg_day = _sessions_from_rates(rng, regular)
    del regular
    sup_user, sup_day = _sessions_from_rates(rng, support)
    del support
    user = np.concatenate([reg_user, sup_user])
    day_index = np.concatenate([reg_day, sup_day])
    is_support = np.concatenate([np.zeros(len(reg_user), bool), np.ones(len(sup_user), bool)])
    n_sessions = len(user)

    # Session start: a diurnal hour on full days, uniform over the alive part of partial days.
    lo = np.maximum(day_index.astype(np.float64), pop.signup_day[user])
    hi = np.minimum(day_index + 1.0, np.minimum(pop.churn_day[user], float(window)))
    hour = categorical_draw(rng.random(n_sessions), HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    diurnal = day_index + (hour + rng.random(n_sessions)) / 24.0
    uniform = lo + rng.random(n_sessions) * (hi - lo)
    full_day = (lo == day_index) & (hi == day_index + 1.0)
    start = np.where(full_day, diurnal, uniform)

    extra = rng.negative_binomial(
        REGULAR_SESSION_SHAPE,
        REGULAR_SESSION_SHAPE / (REGULAR_SESSION_SHAPE + REGULAR_SESSION_MEAN_EXTRA),
        n_sessions,
    )
    extra_support = rng.binomial(1, SUPPORT_SESSION_SECOND_EVENT, n_sessions)
    length = 1 + np.minimum(np.where(is_support, extra_support, extra), MAX_SESSION_EVENTS - 1)

    # Session ids follow start time (ties broken by draw order, deterministic).
    order = np.argsort(start, kind="stable")
    user, day_index, is_support, start, length = (
        a[order] for a in (user, day_index, is_support, start, length)
    )
    session_id = np.arange(1, n_sessions + 1, dtype=np.int64)

    # Events: gaps of seconds to minutes inside a session.
    n_raw = int(length.sum())
    ev_session = np.repeat(np.arange(n_sessions), length)
    first = np.zeros(n_sessions, dtype=np.int64)
    np.cumsum(length[:-1], out=first[1:])
    position = np.arange(n_raw) - first[ev_session]
    gaps = np.exp(rng.normal(np.log(GAP_MEDIAN_SECONDS), 0.9, n_raw))
    gaps[first] = 0.0
    offset = np.cumsum(gaps)
    offset -= offset[first][ev_session]
    ev_day = start[ev_session] + offset / 86_400.0
    next_gap = np.append(gaps[1:], 0.0)
    is_last = np.append(position[1:] == 0, True)
    last_duration = np.exp(rng.normal(np.log(40.0), 0.9, n_raw))
    duration = np.where(is_last, last_duration, next_gap * rng.uniform(0.6, 1.0, n_raw))

    ev_user = user[ev_session]
    ev_s = pop.satisfaction[ev_user, np.minimum(day_index[ev_session], window - 1)].astype(np.float64)
    ev_type = _event_types(rng, ev_s, position, is_support[ev_session])

    favourite = pop.favourite_category[ev_user]
    category = np.where(rng.random(n_raw) < 0.55, favourite, rng.integers(0, len(CATEGORIES), n_raw)).astype(
        np.int8
    )
    device = np.where(
        rng.random(n_raw) < 0.85, pop.device[ev_user], rng.integers(0, len(DEVICES), n_raw)
    ).astype(np.int8)
    drift_u = rng.random(n_raw)
    if drift:
        in_drift = ev_day >= spec.drift_start_day
        device = np.where(
            in_drift & (drift_u < DRIFT_ANDROID_SHARE), DEVICES.index("android"), device
        ).astype(np.int8)
    price = CATEGORY_BASE_PRICE[category] * np.exp(rng.normal(0.0, 0.6, n_raw))
    price_cents = np.clip(np.round(price * 100), 100, 500_000).astype(np.int64)
    duration_tenths = np.clip(np.round(duration * 10), 1, None).astype(np.int64)

    # Keep what happens before churn and before the window's end (sessions can run over).
    limit = np.minimum(pop.churn_day[ev_user], float(window))
    timestamp_us = days_to_us(spec, ev_day)
    keep = timestamp_us < days_to_us(spec, limit)
    order = np.nonzero(keep)[0]
    order = order[np.argsort(timestamp_us[order], kind="stable")]
    return Events(
        user_index=ev_user[order],
        session_id=session_id[ev_session][order],
        day=ev_day[order],
        timestamp_us=timestamp_us[order],
        event_type=ev_type[order],
        category=category[order],
        device=device[order],
        duration_tenths=duration_tenths[order],
        price_cents=price_cents[order],
    )


def _sessions_from_rates(rng: np.random.Generator, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poisson session counts per (user, day) cell -> one (user, day) pair per session."""
    counts = rng.poisson(rate)
    users, days = np.nonzero(counts)
    repeat = counts[users, days]
    return np.repeat(users, repeat).astype(np.int64), np.repeat(days, repeat).astype(np.int64)


def _event_types(
    rng: np.random.Generator, satisfaction: np.ndarray, position: np.ndarray, support_session: np.ndarray
) -> np.ndarray:
    """Event type per event: sessions open with a page view or search; unhappy users buy less and
    contact support more; support sessions are mostly support contacts."""
    n = len(satisfaction)
    z = 1.0 - satisfaction
    buy = np.clip(satisfaction / 0.8, 0.0, 1.2) ** 1.5
    weights = np.empty((n, 6), dtype=np.float64)
    weights[:, PAGE_VIEW] = 0.46
    weights[:, SEARCH] = 0.20
    weights[:, ADD_TO_CART] = 0.14 * buy
    weights[:, PURCHASE] = 0.075 * buy
    weights[:, WISHLIST] = 0.08
    weights[:, SUPPORT_CONTACT] = 0.008 + 0.12 * z * z
    opening = position == 0
    weights[opening] = (0.62, 0.38, 0.0, 0.0, 0.0, 0.0)
    weights[support_session] = (0.7, 0.0, 0.0, 0.0, 0.0, 0.3)
    weights[support_session & opening] = (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(n) * cdf[:, -1]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), 5).astype(np.int8)


def metadata_json(events: Events) -> pa.Array:
    """The metadata JSON strings, assembled column-wise (no per-row json.dumps)."""
    prefixes = pa.array(
        [f'{{"category": "{c}", "device": "{d}", "duration": ' for c in CATEGORIES for d in DEVICES]
    )
    prefix = pc.take(prefixes, pa.array(events.category.astype(np.int64) * len(DEVICES) + events.device))
    duration = pc.binary_join_element_wise(
        pc.cast(pa.array(events.duration_tenths // 10), pa.string()),
        pc.cast(pa.array(events.duration_tenths % 10), pa.string()),
        ".",
    )
    price = pc.binary_join_element_wise(
        pc.cast(pa.array(events.price_cents // 100), pa.string()),
        pc.utf8_lpad(pc.cast(pa.array(events.price_cents % 100), pa.string()), width=2, padding="0"),
        ".",
    )
    priced = pa.array(np.isin(events.event_type, PRICED_TYPES))
    tail = pc.if_else(
        priced,
        pc.binary_join_element_wise(pa.scalar(', "price": '), price, pa.scalar("}"), ""),
        pa.scalar("}"),
    )
    return pc.binary_join_element_wise(prefix, duration, tail, "")


def event_table(
    rng: np.random.Generator, events: Events, spec: WorldSpec, dirty_fraction: float
) -> tuple[pa.Table, int]:
    """The ``event_logs`` table, with about ``dirty_fraction`` of rows made unusable the way real
    logs are: a null user_id, metadata that is not JSON, or a timestamp outside the window.
    Returns the table and the number of unusable rows."""
    n = events.n
    n_dirty = min(round(dirty_fraction * n), n)
    dirty = np.sort(rng.choice(n, size=n_dirty, replace=False)) if n_dirty else np.zeros(0, dtype=np.int64)
    kind = np.arange(n_dirty) % 3

    user_valid = np.ones(n, dtype=bool)
    user_valid[dirty[kind == 0]] = False
    user_id = pa.array(events.user_index + 1, mask=~user_valid, type=pa.int64())

    metadata = metadata_json(events)
    bad_meta = dirty[kind == 1]
    if len(bad_meta):
        mask = np.zeros(n, dtype=bool)
        mask[bad_meta] = True
        choice = np.asarray(DIRTY_METADATA, dtype=object)[rng.integers(0, len(DIRTY_METADATA), len(bad_meta))]
        metadata = pc.replace_with_mask(metadata, pa.array(mask), pa.array(list(choice), pa.string()))

    timestamp_us = events.timestamp_us.copy()
    bad_time = dirty[kind == 2]
    before = rng.random(len(bad_time)) < 0.5
    shift_days = rng.uniform(1.0, 120.0, len(bad_time))
    outside = np.where(before, -shift_days, spec.window_days + shift_days)
    timestamp_us[bad_time] = days_to_us(spec, outside)

    event_type = pc.take(pa.array(EVENT_TYPES), pa.array(events.event_type.astype(np.int64)))
    table = pa.table(
        {
            "event_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "user_id": user_id,
            "session_id": pa.array(events.session_id),
            "event_timestamp": pa.array(timestamp_us, type=pa.timestamp("us", tz="UTC")),
            "event_type": event_type,
            "metadata": metadata,
        }
    )
    return table, n_dirty
