"""Sessions and events, drawn day by day from the users' satisfaction paths, and their JSON metadata.

Each window day has its own random stream (``datagen.population.day_rng``): the sessions that
start on day d, their events and which of them are unusable depend on the seed, d and the
users' state during day d only. A world cut at an earlier end therefore holds exactly the same
events before that end. Within a day everything is vectorised over users, sessions and events;
the metadata strings are assembled column-wise with Arrow compute.

A world's kept events are not held in memory (24 million at a million users would take about
1.7 GB): ``EventSpill`` appends each day's to raw column files on disk and reads them back one
slice of users at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnfs.world import EVENT_TYPES, WorldSpec
from datagen.population import DEVICES, ColumnBatch, Population, categorical_draw, days_to_us

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


DIRTY_NULL_USER, DIRTY_METADATA_KIND, DIRTY_TIME = 1, 2, 3
DIRTY_SHIFT_DAYS = (1.0, 120.0)  # a bad clock dates the row this far past the world's end

# Sessions per day = REGULAR_SESSION_SCALE * activity * (s / 0.8)**4 * weekday: a fixed constant
# (not a share of the whole window's total), so a day's draws never depend on later days. It is
# set so that the default calendar averages EVENTS_PER_USER events per user.
REGULAR_SESSION_SCALE = 0.0394


@dataclass
class Events(ColumnBatch):
    """A batch of events (one day's, or one slice of users'), with what the review writer and the
    dirty-row writer need."""

    user_index: np.ndarray  # int64 row in Population (user_id - 1)
    session_id: np.ndarray  # int64
    day: np.ndarray  # float64 days from start
    timestamp_us: np.ndarray  # int64
    event_type: np.ndarray  # int8 index into EVENT_TYPES
    category: np.ndarray  # int8 index into CATEGORIES
    device: np.ndarray  # int8 index into DEVICES
    duration_tenths: np.ndarray  # int64 tenths of a second
    price_cents: np.ndarray  # int64 cents (meaningful on priced types)
    dirty_kind: np.ndarray  # int8: 0 clean, else DIRTY_NULL_USER, DIRTY_METADATA_KIND or DIRTY_TIME
    dirty_choice: np.ndarray  # int8 index into DIRTY_METADATA
    dirty_shift_days: np.ndarray  # float64 days past the world's end, for DIRTY_TIME rows

    @property
    def n(self) -> int:
        return len(self.day)


class EventSpill:
    """A world's kept events on disk instead of in memory: one raw column file per ``Events``
    field, appended day by day, read back one slice of ``slice_users`` users at a time.

    Each day's rows are stored grouped by slice (``user_index // slice_users``; rows with a null
    user form a group of their own after the last slice), so a slice is one contiguous run per
    day. An ``origin`` column keeps each row's position in the draw order (the days' kept events
    one after the other). Only the timestamps stay in memory, in that order, to rank every event in
    the world's time (``finish``): ranks cost 4 bytes an event, the events about 70."""

    ORIGIN = "origin"

    def __init__(self, folder: Path, slice_users: int, n_users: int) -> None:
        self.folder = folder
        self.slice_users = slice_users
        self.null_group = -(-n_users // slice_users)  # after every user's slice
        self.n = 0
        self.n_sessions = 0
        self.last_user = -1
        self.time_rank = np.empty(0, dtype=np.int32)
        self._names = [field.name for field in fields(Events)]
        self._dtypes: dict[str, np.dtype] = {self.ORIGIN: np.dtype(np.int64)}
        self._day_bounds: list[np.ndarray] = []
        self._timestamps: list[np.ndarray] = []
        folder.mkdir()
        with contextlib.ExitStack() as opening:
            self._files: dict[str, BinaryIO] = {
                name: opening.enter_context(open(folder / f"{name}.bin", "wb"))
                for name in (*self._names, self.ORIGIN)
            }
            self._open_files = opening.pop_all()  # closed by finish() or on leaving a with block

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_files()

    def append(self, events: Events) -> None:
        """Spill one day's kept events (in draw order), grouped by slice of users. The days' session
        ids never overlap, so the day's distinct ids add up to the world's session count."""
        null_user = events.dirty_kind == DIRTY_NULL_USER
        group = np.where(null_user, self.null_group, events.user_index // self.slice_users)
        order = np.argsort(group, kind="stable")
        counts = np.bincount(group, minlength=self.null_group + 1)
        bounds = np.zeros(self.null_group + 2, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        self._day_bounds.append(self.n + bounds)
        for name in self._names:
            column = getattr(events, name)
            self._dtypes[name] = column.dtype
            column[order].tofile(self._files[name])
        (self.n + order.astype(np.int64)).tofile(self._files[self.ORIGIN])
        self._timestamps.append(events.timestamp_us)
        self.n += events.n
        self.n_sessions += len(np.unique(events.session_id))
        if events.n:
            self.last_user = max(self.last_user, int(events.user_index.max()))

    def finish(self) -> None:
        """Close the files and rank every event in the world's time: a stable sort of the
        timestamps in draw order, as sorting all events at once would."""
        self._close_files()
        timestamps = np.concatenate(self._timestamps) if self._timestamps else np.empty(0, np.int64)
        self._timestamps.clear()
        order = np.argsort(timestamps, kind="stable")
        del timestamps
        rank_type = np.int32 if self.n < 2**31 else np.int64
        self.time_rank = np.empty(self.n, dtype=rank_type)
        self.time_rank[order] = np.arange(self.n, dtype=rank_type)

    def user_slices(self) -> Iterator[tuple[Events, np.ndarray]]:
        """Each slice of users up to the last one with an event, read back from disk: its events
        ordered by user, then time, and their ranks in the world's time (from 0). Null-user rows
        come last in the last slice, where Arrow's sort would put them. Empty slices are skipped."""
        if self.n == 0:
            return
        bounds = np.stack(self._day_bounds)  # (days, groups + 1) rows into the files
        last = self.last_user // self.slice_users
        for first_group in range(last + 1):
            end_group = first_group + 1 if first_group < last else self.null_group + 1
            starts, stops = bounds[:, first_group], bounds[:, end_group]
            runs = [(int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b > a]
            if not runs:
                continue
            events = Events(**{name: self._read(name, runs) for name in self._names})
            rank = self.time_rank[self._read(self.ORIGIN, runs)]
            null_user = events.dirty_kind == DIRTY_NULL_USER
            user_key = np.where(null_user, np.iinfo(np.int64).max, events.user_index)
            order = np.lexsort((rank, user_key))
            yield events.take(order), rank[order]

    def _read(self, name: str, runs: list[tuple[int, int]]) -> np.ndarray:
        """The rows ``runs`` of one column file, copied out of a map that is dropped at once (its
        pages leave the resident set with it)."""
        mapped = np.memmap(self.folder / f"{name}.bin", dtype=self._dtypes[name], mode="r")
        rows = np.concatenate([mapped[a:b] for a, b in runs])
        del mapped
        return rows

    def _close_files(self) -> None:
        self._open_files.close()


def sample_day_events(
    rng: np.random.Generator,
    dirty_rng: np.random.Generator,
    pop: Population,
    spec: WorldSpec,
    drift: bool,
    day: int,
    dirty_fraction: float,
) -> tuple[Events, int]:
    """The sessions that start on window day ``day`` and all their events, in session order.

    Drawn from this day's random streams and the users' state during the day only. Events past
    churn or the world's end are still returned (the caller keeps what lies before them), so the
    draws of a day never depend on where the world ends. Returns the events and the number of
    sessions (their ids are numbered by the caller)."""
    rows, lo_alive, hi_alive = pop.alive_on_day(day)
    mid = day + 0.5
    s = pop.paths.at(rows, mid)
    z = 1.0 - s
    weekday = WEEKDAY_WEIGHTS[day % 7]
    share = hi_alive - lo_alive
    regular = REGULAR_SESSION_SCALE * pop.activity_rate[rows] * (s / 0.8) ** 4 * weekday * share
    falling = pop.paths.falling_at(rows, mid)
    support = (SUPPORT_LEVEL_RATE * z**4 + SUPPORT_DECLINE_RATE * falling) * share
    n_regular = rng.poisson(regular)
    n_support = rng.poisson(support)
    each = np.arange(len(rows))
    local = np.concatenate([np.repeat(each, n_regular), np.repeat(each, n_support)])
    is_support = np.concatenate([np.zeros(int(n_regular.sum()), bool), np.ones(int(n_support.sum()), bool)])
    user = rows[local]
    n_sessions = len(user)

    # Session start: a diurnal hour on full days, uniform over the alive part of partial days.
    lo, hi = lo_alive[local], hi_alive[local]
    hour = categorical_draw(rng.random(n_sessions), HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    diurnal = day + (hour + rng.random(n_sessions)) / 24.0
    uniform = lo + rng.random(n_sessions) * (hi - lo)
    full_day = (lo == day) & (hi == day + 1.0)
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
    user, is_support, start, length = (a[order] for a in (user, is_support, start, length))
    session = np.arange(n_sessions, dtype=np.int64)

    # Events: gaps of seconds to minutes inside a session.
    n_raw = int(length.sum())
    ev_session = np.repeat(session, length)
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
    ev_s = pop.paths.at(ev_user, start[ev_session])
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

    # Unusable rows, the way real logs have them: each event on its own draw.
    dirty = dirty_rng.random(n_raw) < dirty_fraction
    kind = np.where(dirty, dirty_rng.integers(1, 4, n_raw), 0).astype(np.int8)
    choice = dirty_rng.integers(0, len(DIRTY_METADATA), n_raw).astype(np.int8)
    shift = dirty_rng.uniform(*DIRTY_SHIFT_DAYS, n_raw)

    events = Events(
        user_index=ev_user,
        session_id=ev_session,  # the day's session number; the caller adds the running offset
        day=ev_day,
        timestamp_us=days_to_us(spec, ev_day),
        event_type=ev_type,
        category=category,
        device=device,
        duration_tenths=duration_tenths,
        price_cents=price_cents,
        dirty_kind=kind,
        dirty_choice=choice,
        dirty_shift_days=shift,
    )
    return events, n_sessions


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


def event_table(events: Events, spec: WorldSpec, event_id: np.ndarray | None = None) -> tuple[pa.Table, int]:
    """The ``event_logs`` table, with the rows drawn dirty made unusable the way real logs are: a
    null user_id, metadata that is not JSON, or a timestamp from a bad clock past the world's end.

    ``event_id`` numbers the rows (default 1..n: ``events`` is the whole world in time order); a
    slice of the world passes its rows' ids. Returns the table and the number of unusable rows."""
    n = events.n
    if event_id is None:
        event_id = np.arange(1, n + 1, dtype=np.int64)
    kind = events.dirty_kind
    user_id = pa.array(events.user_index + 1, mask=kind == DIRTY_NULL_USER, type=pa.int64())

    metadata = metadata_json(events)
    bad_meta = kind == DIRTY_METADATA_KIND
    if bad_meta.any():
        choice = np.asarray(DIRTY_METADATA, dtype=object)[events.dirty_choice[bad_meta]]
        metadata = pc.replace_with_mask(metadata, pa.array(bad_meta), pa.array(list(choice), pa.string()))

    bad_time = kind == DIRTY_TIME
    timestamp_us = np.where(
        bad_time, days_to_us(spec, spec.window_days + events.dirty_shift_days), events.timestamp_us
    )

    event_type = pc.take(pa.array(EVENT_TYPES), pa.array(events.event_type.astype(np.int64)))
    table = pa.table(
        {
            "event_id": pa.array(np.asarray(event_id, dtype=np.int64)),
            "user_id": user_id,
            "session_id": pa.array(events.session_id),
            "event_timestamp": pa.array(timestamp_us, type=pa.timestamp("us", tz="UTC")),
            "event_type": event_type,
            "metadata": metadata,
        }
    )
    return table, int((kind != 0).sum())
