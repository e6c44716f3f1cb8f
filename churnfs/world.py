"""The world's calendar: its window, the label cutoffs and the feature as-of calendar.

The generator writes a ``WorldSpec`` beside the raw tables (``raw/_world.json``); every later
stage reads it from there, so the calendar has one source of truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from churnfs.errors import MissingDataError
from churnfs.io import write_text_atomic

WORLD_START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, so weekly snapshots fall on Mondays
WINDOW_DAYS = 182  # 26 weeks, about six months
LABEL_HORIZON_DAYS = 30
FIRST_CUTOFF_DAY = 28  # four weeks of history before the first label cutoff
CUTOFF_EVERY_DAYS = 14
DRIFT_DAYS = 28  # planted drift lives in the window's last four weeks
TRAIN_END_DAY = 114  # labels of the cutoffs up to day 84 are all known by then

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
    """What the generator built: scale, seed and the calendar (all times UTC)."""

    users: int
    seed: int
    drift: bool
    start: datetime = WORLD_START
    window_days: int = WINDOW_DAYS
    label_horizon_days: int = LABEL_HORIZON_DAYS
    first_cutoff_day: int = FIRST_CUTOFF_DAY
    cutoff_every_days: int = CUTOFF_EVERY_DAYS
    drift_days: int = DRIFT_DAYS
    train_end_day: int = TRAIN_END_DAY

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.window_days)

    @property
    def drift_start(self) -> datetime:
        return self.end - timedelta(days=self.drift_days)

    @property
    def train_end(self) -> datetime:
        """End of the training period: training cutoffs and their whole label horizons lie before
        it; fitted artifacts (topic model, scalers) see only data before it."""
        return self.start + timedelta(days=self.train_end_day)

    def train_cutoffs(self) -> list[datetime]:
        """Cutoffs whose label horizon ends by ``train_end``."""
        horizon = timedelta(days=self.label_horizon_days)
        return [c for c in self.cutoffs() if c + horizon <= self.train_end]

    def validation_cutoffs(self) -> list[datetime]:
        """Cutoffs at or after ``train_end``: at least one label horizon after the last training cutoff."""
        return [c for c in self.cutoffs() if c >= self.train_end]

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
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorldSpec:
        data = json.loads(text)
        data.pop("end", None)
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
