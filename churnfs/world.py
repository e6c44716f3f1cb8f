"""The world's calendar: its window, the label cutoffs and the feature as-of calendar.

The generator writes a ``WorldSpec`` beside the raw tables (``raw/_world.json``); every later
stage reads it from there, so the calendar has one source of truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from churnfs.errors import MissingDataError
from churnfs.io import write_text_atomic

WORLD_START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, so weekly snapshots fall on Mondays
WINDOW_DAYS = 182  # the default calendar: 26 weeks, about six months (last day 2025-07-06)
LABEL_HORIZON_DAYS = 30
FIRST_CUTOFF_DAY = 28  # four weeks of history before the first label cutoff
CUTOFF_EVERY_DAYS = 14
DRIFT_START_DAY = 154  # planted drift from this calendar day on: the default window's last four weeks

WORLD_SPEC_FILE = "_world.json"

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "search",
    "add_to_cart",
    "purchase",
    "wishlist",
    "support_contact",
)
"""The event types of ``event_logs``, in the fixed order of ``categorical_event_vector``."""


@dataclass(frozen=True)
class WorldSpec:
    """What the generator built: scale, seed and the calendar (all times UTC).

    The world runs from ``start`` for ``window_days`` days (``churnfs generate --end`` sets its last
    day). Every calendar date but ``end`` is fixed, so two worlds that differ only in their end
    agree on everything before the earlier end. The label cutoffs split, in time order, into three
    periods separated by more than one label horizon: **train** (fitting, fitted preprocessing,
    the topic model, monitoring's reference), **validation** (early stopping, model choice) and
    **test** (the last cutoff, scored once at the end of training)."""

    users: int
    seed: int
    drift: bool
    start: datetime = WORLD_START
    window_days: int = WINDOW_DAYS
    label_horizon_days: int = LABEL_HORIZON_DAYS
    first_cutoff_day: int = FIRST_CUTOFF_DAY
    cutoff_every_days: int = CUTOFF_EVERY_DAYS
    drift_start_day: int = DRIFT_START_DAY

    @property
    def end(self) -> datetime:
        """The first instant after the world: no raw row is dated at or after it."""
        return self.start + timedelta(days=self.window_days)

    @property
    def last_day(self) -> date:
        """The world's last calendar day (what ``churnfs generate --end`` takes)."""
        return (self.end - timedelta(days=1)).date()

    @property
    def drift_start(self) -> datetime:
        """Where the planted drift begins (a fixed calendar date; at or after ``end`` when the world
        stops before it)."""
        return self.start + timedelta(days=self.drift_start_day)

    @property
    def has_drift_period(self) -> bool:
        return self.drift and self.drift_start < self.end

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.label_horizon_days)

    def test_cutoffs(self) -> list[datetime]:
        """The test period: the last cutoff, touched once, at the end of training."""
        return self.cutoffs()[-1:]

    def validation_cutoffs(self) -> list[datetime]:
        """The validation period: the latest cutoff whose label horizon ends by the test cutoff."""
        test = self.test_cutoffs()
        if not test:
            return []
        return [c for c in self.cutoffs() if c + self.horizon <= test[0]][-1:]

    def train_cutoffs(self) -> list[datetime]:
        """The training period: every cutoff whose label horizon ends by the validation cutoff."""
        valid = self.validation_cutoffs()
        if not valid:
            return []
        return [c for c in self.cutoffs() if c + self.horizon <= valid[0]]

    @property
    def train_end(self) -> datetime:
        """End of the training period: the last training label's horizon end. Fitted artifacts (topic
        model, scalers) and monitoring's reference see only data before it. A world too short for
        three periods has its training period end at its first cutoff's horizon end."""
        train = self.train_cutoffs() or self.cutoffs()[:1]
        if not train:
            return self.end
        return min(max(train) + self.horizon, self.end)

    def periods(self) -> dict[str, list[datetime]]:
        """The three periods' cutoffs, in time order."""
        return {
            "train": self.train_cutoffs(),
            "validation": self.validation_cutoffs(),
            "test": self.test_cutoffs(),
        }

    def cutoffs(self) -> list[datetime]:
        """Label cutoffs: every ``cutoff_every_days`` from ``first_cutoff_day`` while the whole
        30-day label horizon still lies inside the window."""
        out = []
        day = self.first_cutoff_day
        while day + self.label_horizon_days <= self.window_days:
            out.append(self.start + timedelta(days=day))
            day += self.cutoff_every_days
        return out

    def as_of_calendar(self, every_days: int = 7) -> list[datetime]:
        """Feature snapshot times: every ``every_days`` after the start, plus every cutoff and the
        window's end, sorted and de-duplicated."""
        times = {self.start + timedelta(days=d) for d in range(every_days, self.window_days + 1, every_days)}
        times.update(self.cutoffs())
        times.add(self.end)
        return sorted(times)

    def to_json(self) -> str:
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["end"] = self.end.isoformat()
        data["last_day"] = self.last_day.isoformat()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorldSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        if "drift_days" in data and "drift_start_day" not in data:  # a world written before --end
            data["drift_start_day"] = data["window_days"] - data["drift_days"]
        data = {k: v for k, v in data.items() if k in known}
        data["start"] = datetime.fromisoformat(data["start"])
        return cls(**data)

    def save(self, raw_dir: Path) -> None:
        write_text_atomic(self.to_json(), Path(raw_dir) / WORLD_SPEC_FILE)


def load_world_spec(raw_dir: Path) -> WorldSpec:
    """Read the spec the generator wrote; a clear error when the world was not generated yet."""
    path = Path(raw_dir) / WORLD_SPEC_FILE
    if not path.exists():
        raise MissingDataError(
            f"no raw world at {raw_dir} ({WORLD_SPEC_FILE} missing): run `make data` first"
        )
    return WorldSpec.from_json(path.read_text(encoding="utf-8"))
