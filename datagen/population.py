"""Users, their hidden satisfaction and their churn: the process every other table follows.

Time is measured in days from the world's start (floats; negative before it). Daily grids have
one column per window day ``d`` (the interval ``[d, d + 1)``), evaluated at the day's midpoint.

Every per-user draw here has a fixed size (one per user, whatever the world's end), and the
satisfaction path and the hazard at time t depend only on the user's parameters and on t, so a
world cut at an earlier end holds the same users, paths and churn times before that end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Self

import numpy as np
import pandas as pd

from churnfs.world import WorldSpec

US_PER_DAY = 86_400_000_000

GENDERS = ("female", "male", "other")
GENDER_WEIGHTS = (0.49, 0.48, 0.03)
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "BR", "IN")
COUNTRY_WEIGHTS = (0.30, 0.12, 0.11, 0.09, 0.07, 0.06, 0.05, 0.07, 0.07, 0.06)
DEVICES = ("ios", "android", "web")
DEVICE_WEIGHTS = (0.40, 0.32, 0.28)
DRIFT_DEVICE_WEIGHTS = (0.18, 0.70, 0.12)  # signups after the new Android app launched

PRE_WINDOW_SHARE = 0.75  # users who signed up before the window starts
SIGNUP_SPAN_DAYS = 182.0  # the others sign up uniformly over the default calendar's 26 weeks
MAX_ACCOUNT_AGE_DAYS = 5 * 365

# Satisfaction: a per-user base level in [0.55, 0.95]; a share of users start a decline at a
# random time and fall linearly to a personal floor. Behaviour follows satisfaction at once; the
# churn hazard follows it with a lag (people disengage first and leave weeks later), and only
# dissatisfaction beyond a threshold raises it, so a settled user's hazard is set by what is
# observable (tenure, premium) and a decline dominates everything else.
DECLINE_SHARE = 0.5
DECLINE_START_RANGE = (-45.0, 200.0)  # days; beyond the window means "not in this window"
DECLINE_RATE_RANGE = (1 / 50, 1 / 15)  # satisfaction lost per day
DECLINE_FLOOR_RANGE = (0.02, 0.3)
HAZARD_BASE = 0.001  # per day, for a settled, non-premium, long-tenure user
HAZARD_SLOPE = 9.0  # log-hazard per unit of dissatisfaction beyond the threshold
HAZARD_THRESHOLD = 0.45  # dissatisfaction (1 - s) that starts to raise the hazard
HAZARD_LAG_DAYS = 28.0  # the hazard at t follows satisfaction at t - lag
PREMIUM_HAZARD_FACTOR = 0.35
YOUNG_USER_HAZARD_BOOST = 0.8  # extra hazard at age 18, fading with YOUNG_USER_AGE_SCALE years
YOUNG_USER_AGE_SCALE = 12.0
NEW_USER_HAZARD_BOOST = 3.0  # extra hazard at tenure 0, fading with NEW_USER_TENURE_DAYS
NEW_USER_TENURE_DAYS = 90.0


@dataclass(frozen=True)
class SatisfactionPaths:
    """Per-user parameters of the satisfaction path ``s(t) = max(floor, base - rate * (t - start)+)``."""

    base: np.ndarray
    decline_start: np.ndarray  # +inf for users who do not decline
    rate: np.ndarray
    floor: np.ndarray

    def on_grid(self, window: int, lag: float = 0.0) -> np.ndarray:
        """(n, window) satisfaction at day midpoints minus ``lag`` days, float32."""
        mid = np.arange(window, dtype=np.float64)[None, :] + 0.5 - lag
        elapsed = np.clip(mid - self.decline_start[:, None], 0.0, None)
        path = np.maximum(self.base[:, None] - self.rate[:, None] * elapsed, self.floor[:, None])
        return path.astype(np.float32)

    def rows(self, index: slice) -> SatisfactionPaths:
        """The paths of a slice of users."""
        return SatisfactionPaths(
            base=self.base[index],
            decline_start=self.decline_start[index],
            rate=self.rate[index],
            floor=self.floor[index],
        )

    def at(self, rows: np.ndarray, t: np.ndarray | float) -> np.ndarray:
        """Satisfaction of users ``rows`` at times ``t`` (days), float64."""
        elapsed = np.clip(t - self.decline_start[rows], 0.0, None)
        return np.maximum(self.base[rows] - self.rate[rows] * elapsed, self.floor[rows])

    def falling_at(self, rows: np.ndarray, t: float) -> np.ndarray:
        """Whether the satisfaction of users ``rows`` is still falling at time ``t``."""
        start = self.decline_start[rows]
        reached_floor = start + (self.base[rows] - self.floor[rows]) / self.rate[rows]
        return (t > start) & (t < reached_floor)


@dataclass
class Population:
    """The user table plus the hidden state the other tables are drawn from."""

    user_id: np.ndarray  # int64, 1..n
    signup_day: np.ndarray  # float64 days from start
    signup_us: np.ndarray  # int64 microseconds since the epoch
    age: np.ndarray
    gender: np.ndarray  # index into GENDERS
    country: np.ndarray  # index into COUNTRIES
    income: np.ndarray
    device: np.ndarray  # index into DEVICES
    premium: np.ndarray  # bool
    activity_rate: np.ndarray  # heavy-tailed sessions-per-day multiplier (lognormal)
    favourite_category: np.ndarray  # index into events.CATEGORIES
    paths: SatisfactionPaths
    review_rate: np.ndarray  # per event: the chance that the user reviews it (0 for non-writers)
    hazard_days: np.ndarray  # int64 day boundaries the labels need (each cutoff and its horizon's end)
    cum_hazard: np.ndarray  # (n, len(hazard_days)) float64: the cumulative hazard at those boundaries
    churn_day: np.ndarray  # float64 days from start; +inf if the user stays past the window

    @property
    def n(self) -> int:
        return len(self.user_id)

    def alive_on_day(self, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The users signed up and not churned during part of day ``day``: their rows and the
        start and end (days) of that part."""
        lo = np.maximum(float(day), self.signup_day)
        hi = np.minimum(float(day + 1), self.churn_day)
        rows = np.nonzero(hi > lo)[0]
        return rows, lo[rows], hi[rows]

    def user_table(self, spec: WorldSpec) -> pd.DataFrame:
        """One row per user signed up before the world's end."""
        start_us = _epoch_us(spec)
        rows = np.nonzero(self.signup_us < days_to_us(spec, np.array([float(spec.window_days)]))[0])[0]
        signup_us = self.signup_us[rows]
        account_age = np.where(signup_us < start_us, (start_us - signup_us) // US_PER_DAY, 0)
        return pd.DataFrame(
            {
                "user_id": self.user_id[rows],
                "signup_date": pd.to_datetime(signup_us, unit="us", utc=True),
                "age": self.age[rows].astype(np.int64),
                "gender": np.asarray(GENDERS, dtype=object)[self.gender[rows]],
                "country": np.asarray(COUNTRIES, dtype=object)[self.country[rows]],
                "income": self.income[rows].astype(np.float64),
                "device": np.asarray(DEVICES, dtype=object)[self.device[rows]],
                "account_age_days": account_age.astype(np.int64),
                "premium": self.premium[rows].astype(bool),
            }
        )


def _epoch_us(spec: WorldSpec) -> int:
    return int(spec.start.timestamp()) * 1_000_000


def days_to_us(spec: WorldSpec, days: np.ndarray) -> np.ndarray:
    """Float days from the start to int64 microseconds since the epoch (floored)."""
    return _epoch_us(spec) + np.floor(np.asarray(days, dtype=np.float64) * US_PER_DAY).astype(np.int64)


def sample_population(
    rng: np.random.Generator,
    review_rng: np.random.Generator,
    n: int,
    spec: WorldSpec,
    drift: bool,
    n_categories: int,
) -> Population:
    """Draw the users, their satisfaction paths, review habits and churn times.

    ``review_rng`` draws each user's review habit (``datagen.reviews.review_rates``)."""
    from datagen.reviews import review_rates

    window = spec.window_days
    drift_day = float(spec.drift_start_day)

    # Signup: 75% before the window (more recent accounts more common), the rest inside it.
    pre = rng.random(n) < PRE_WINDOW_SHARE
    age_days = rng.beta(1.0, 1.8, n) * MAX_ACCOUNT_AGE_DAYS
    in_window_day = rng.random(n) * SIGNUP_SPAN_DAYS
    signup_day = np.where(pre, -age_days, in_window_day)
    signup_us = days_to_us(spec, signup_day)
    signup_day = (signup_us - _epoch_us(spec)) / US_PER_DAY  # exactly what the table says

    age = np.clip(np.round(18 + rng.gamma(3.0, 6.5, n)), 18, 80).astype(np.int64)
    gender = categorical_draw(rng.random(n), GENDER_WEIGHTS)
    country = categorical_draw(rng.random(n), COUNTRY_WEIGHTS)
    income = np.round(np.clip(np.exp(rng.normal(np.log(48_000), 0.6, n)), 8_000, 400_000), 2)
    device_u = rng.random(n)
    device = categorical_draw(device_u, DEVICE_WEIGHTS)
    if drift:
        late = signup_day >= drift_day
        device = np.where(late, categorical_draw(device_u, DRIFT_DEVICE_WEIGHTS), device)
    premium_p = 0.06 + 0.34 / (1.0 + np.exp(-2.0 * (np.log(income) - np.log(70_000))))
    premium = rng.random(n) < premium_p
    activity_rate = np.exp(rng.normal(0.0, 0.7, n))
    category_weights = 1.0 / np.arange(1, n_categories + 1) ** 0.8
    favourite_category = categorical_draw(rng.random(n), category_weights / category_weights.sum())

    paths = _satisfaction_paths(rng, signup_day)
    threshold = np.asarray(rng.exponential(1.0, size=n), dtype=np.float64)
    hazard_days = label_days(spec)
    cum_hazard = np.empty((n, len(hazard_days)), dtype=np.float64)
    churn_day = np.empty(n, dtype=np.float64)
    # The (users x days) hazard matrices, a slice of users at a time: every user's values are
    # the same whatever the slice, and memory holds one slice's temporaries (about 1.5 GB per
    # million users per matrix at once otherwise). Only the label days' columns are kept.
    for start in range(0, n, HAZARD_SLICE_USERS):
        rows = slice(start, min(n, start + HAZARD_SLICE_USERS))
        cum, rate = _cumulative_hazard(paths.rows(rows), window, signup_day[rows], premium[rows], age[rows])
        cum_hazard[rows] = cum[:, hazard_days]
        churn_day[rows] = _sample_churn(threshold[rows], cum, rate, signup_day[rows])
        del cum, rate

    return Population(
        user_id=np.arange(1, n + 1, dtype=np.int64),
        signup_day=signup_day,
        signup_us=signup_us,
        age=age,
        gender=gender,
        country=country,
        income=income,
        device=device,
        premium=premium,
        activity_rate=activity_rate,
        favourite_category=favourite_category,
        paths=paths,
        review_rate=review_rates(review_rng, n),
        hazard_days=hazard_days,
        cum_hazard=cum_hazard,
        churn_day=churn_day,
    )


HAZARD_SLICE_USERS = 50_000


def label_days(spec: WorldSpec) -> np.ndarray:
    """The day boundaries the labels read the cumulative hazard at: each cutoff and the end of
    its horizon (ascending, distinct). Keeping these columns only, not every window day's, takes
    about 18 floats per user instead of 181 (1.5 GB per million users)."""
    days = [_cutoff_day(spec, cutoff) for cutoff in spec.cutoffs()]
    return np.unique(np.array(days + [d + spec.label_horizon_days for d in days], dtype=np.int64))


def _cutoff_day(spec: WorldSpec, cutoff: datetime) -> int:
    return round((cutoff - spec.start).total_seconds() / 86_400)


def categorical_draw(u: np.ndarray, weights: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: uniform numbers ``u`` to category indices with the given weights."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1).astype(np.int64)


def _satisfaction_paths(rng: np.random.Generator, signup_day: np.ndarray) -> SatisfactionPaths:
    n = len(signup_day)
    base = 0.55 + 0.40 * rng.beta(2.5, 2.0, n)
    declines = rng.random(n) < DECLINE_SHARE
    lo = np.maximum(DECLINE_START_RANGE[0], signup_day + 7.0)
    hi = DECLINE_START_RANGE[1]
    decline_start = lo + rng.random(n) * np.maximum(hi - lo, 0.0)
    rate = rng.uniform(*DECLINE_RATE_RANGE, n)
    floor = rng.uniform(*DECLINE_FLOOR_RANGE, n)
    return SatisfactionPaths(
        base=base,
        decline_start=np.where(declines, decline_start, np.inf),
        rate=rate,
        floor=np.minimum(floor, base),
    )


def _cumulative_hazard(
    paths: SatisfactionPaths, window: int, signup_day: np.ndarray, premium: np.ndarray, age: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Daily hazard rate (per day) and its integral at day boundaries, from signup on."""
    n = len(signup_day)
    days = np.arange(window, dtype=np.float64)[None, :]
    excess = np.clip(1.0 - paths.on_grid(window, lag=HAZARD_LAG_DAYS) - HAZARD_THRESHOLD, 0.0, None)
    tenure = np.clip(days + 0.5 - signup_day[:, None], 0.0, None)
    rate = HAZARD_BASE * np.exp(HAZARD_SLOPE * excess.astype(np.float64))
    rate *= 1.0 + NEW_USER_HAZARD_BOOST * np.exp(-tenure / NEW_USER_TENURE_DAYS)
    rate *= np.where(premium, PREMIUM_HAZARD_FACTOR, 1.0)[:, None]
    rate *= (1.0 + YOUNG_USER_HAZARD_BOOST * np.exp(-(age - 18.0) / YOUNG_USER_AGE_SCALE))[:, None]
    exposure = np.clip(days + 1.0 - signup_day[:, None], 0.0, 1.0)
    cum = np.zeros((n, window + 1), dtype=np.float64)
    np.cumsum(rate * exposure, axis=1, out=cum[:, 1:])
    return cum, rate


def _sample_churn(
    threshold: np.ndarray, cum_hazard: np.ndarray, rate: np.ndarray, signup_day: np.ndarray
) -> np.ndarray:
    """Churn time by inversion: the first time the cumulative hazard exceeds ``threshold`` (the
    users' Exp(1) draws)."""
    n, boundaries = cum_hazard.shape
    window = boundaries - 1
    day = (cum_hazard[:, 1:] < threshold[:, None]).sum(axis=1)
    churns = day < window
    rows = np.nonzero(churns)[0]
    d = day[rows]
    begin = np.maximum(d.astype(np.float64), signup_day[rows])
    churn_day = np.full(n, np.inf)
    churn_day[rows] = begin + (threshold[rows] - cum_hazard[rows, d]) / rate[rows, d]
    # Guard against rounding pushing the time onto the next day.
    churn_day[rows] = np.minimum(churn_day[rows], np.nextafter(d + 1.0, -np.inf))
    return churn_day


def build_labels(pop: Population, spec: WorldSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The target table and the oracle: one row per (user active at the cutoff, cutoff).

    ``churned`` is 1 when the churn time lies in ``[cutoff, cutoff + horizon)``; the oracle is
    ``1 - exp(-(H(cutoff + horizon) - H(cutoff)))`` from the same cumulative hazard ``H``."""
    horizon = spec.label_horizon_days
    column = {int(day): i for i, day in enumerate(pop.hazard_days)}
    users, cutoffs, churned, prob = [], [], [], []
    for cutoff in spec.cutoffs():
        day = _cutoff_day(spec, cutoff)
        active = (pop.signup_day < day) & (pop.churn_day >= day)
        idx = np.nonzero(active)[0]
        users.append(pop.user_id[idx])
        cutoffs.append(np.full(len(idx), _epoch_us(spec) + day * US_PER_DAY, dtype=np.int64))
        churned.append((pop.churn_day[idx] < day + horizon).astype(np.int64))
        delta = pop.cum_hazard[idx, column[day + horizon]] - pop.cum_hazard[idx, column[day]]
        prob.append(-np.expm1(-delta))
    timestamps = pd.to_datetime(np.concatenate(cutoffs), unit="us", utc=True)
    user_id = np.concatenate(users)
    target = pd.DataFrame(
        {"user_id": user_id, "event_timestamp": timestamps, "churned": np.concatenate(churned)}
    )
    oracle = pd.DataFrame(
        {"user_id": user_id, "event_timestamp": timestamps, "churn_probability": np.concatenate(prob)}
    )
    return target, oracle


class ColumnBatch:
    """A dataclass of equally long arrays (one row per element): row selection and concatenation."""

    def take(self, index: np.ndarray) -> Self:
        names = self.__dataclass_fields__  # type: ignore[attr-defined]
        return type(self)(**{name: getattr(self, name)[index] for name in names})

    @classmethod
    def concatenate(cls, parts: list[Self]) -> Self:
        names = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})


def day_rng(seed: int, stream: int, day: int) -> np.random.Generator:
    """The random stream ``stream`` of window day ``day``: its draws depend on (seed, stream, day)
    only, so the days before any end are drawn the same whatever the world's end."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, day])))
