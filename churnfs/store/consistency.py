"""The promise Feast does not check: the online store serves the offline point-in-time values.

``check_consistency`` samples users, adds every refreshed user (one with a part appended to an
online view's source, ``churnfs.store.parts``), reads every online feature of them twice (Feast's
``get_online_features`` from the online store, and ``get_historical_features`` from the offline
store as of the materialization end, or as of the user's latest refresh when that is later) and
compares them feature by feature: integers, booleans and strings exactly, floats to 1e-6
(relative above 1), vectors element-wise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast import FeatureStore, FeatureView
from feast.infra.offline_stores.file_source import FileSource

from churnfs.errors import MissingDataError
from churnfs.settings import Settings
from churnfs.store.errors import ConsistencyError
from churnfs.store.parts import part_files
from churnfs.store.repo import get_store

TOLERANCE = 1e-6


@dataclass(frozen=True)
class Mismatch:
    """One feature of one user that differs between the online and the offline store."""

    user_id: int
    feature: str  # "view:feature"
    online: Any
    offline: Any

    def __str__(self) -> str:
        online, offline = _short(self.online), _short(self.offline)
        return f"user {self.user_id} {self.feature}: online {online} != offline {offline}"


@dataclass
class ConsistencyReport:
    """What the check compared and the first mismatches it found."""

    as_of: datetime
    users: int
    features: int
    mismatch_count: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    user_ids: list[int] = field(default_factory=list)
    refreshed_user_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0

    def summary(self) -> dict[str, object]:
        return {
            "as of": self.as_of.isoformat(),
            "users compared": self.users,
            "of them refreshed": len(self.refreshed_user_ids),
            "features per user": self.features,
            "values compared": self.users * self.features,
            "mismatches": self.mismatch_count,
            "result": "consistent" if self.ok else "INCONSISTENT",
        }

    def raise_if_inconsistent(self, shown: int = 3) -> None:
        """Raise ConsistencyError naming the first mismatches (the CLI exits non-zero)."""
        if self.ok:
            return
        first = "; ".join(str(m) for m in self.mismatches[:shown])
        raise ConsistencyError(
            f"online store differs from the offline store in {self.mismatch_count} of "
            f"{self.users * self.features} values as of {self.as_of.isoformat()}: {first}. "
            "Re-run `make materialize`; if the offline store was rebuilt since the last materialize, "
            "run `churnfs materialize --replace` (Feast keeps a stored value whose event time is not "
            "older than the new one); else look for a writer bypassing Feast."
        )


def _short(value: Any) -> str:
    if isinstance(value, list | tuple | np.ndarray) and len(value) > 4:
        return f"[{', '.join(f'{v:.6g}' for v in list(value)[:3])}, ... ({len(value)} values)]"
    return repr(value)


def _materialization_end(views: list[FeatureView]) -> datetime:
    ends = {fv.name: fv.most_recent_end_time for fv in views}
    missing = [name for name, end in ends.items() if end is None]
    if missing:
        raise MissingDataError(f"{', '.join(missing)} never materialized: run `make materialize` first")
    distinct = set(ends.values())
    if len(distinct) > 1:
        raise MissingDataError(
            "feature views were materialized up to different times "
            f"({', '.join(f'{k} {v}' for k, v in ends.items())}): run `make materialize` again"
        )
    return distinct.pop()  # type: ignore[return-value]


def _users_known_at(views: list[FeatureView], as_of: datetime, join_key: str) -> np.ndarray:
    """Users with at least one offline row at or before ``as_of`` in any online view."""
    ids: set[int] = set()
    for fv in views:
        source = fv.batch_source
        if not isinstance(source, FileSource):
            continue
        dataset = ds.dataset(Path(source.path), format="parquet")
        table = dataset.to_table(
            columns=[join_key], filter=pc.field(source.timestamp_field) <= pc.scalar(pd.Timestamp(as_of))
        )
        ids.update(pc.unique(table.column(join_key)).to_pylist())
    return np.array(sorted(ids), dtype=np.int64)


def refreshed_users(views: list[FeatureView]) -> dict[int, datetime]:
    """Every user with a refreshed row in an online view's parts, and their newest refreshed
    event time (the online store holds that row since the refresh pushed it)."""
    newest: dict[int, datetime] = {}
    for fv in views:
        source = fv.batch_source
        if not isinstance(source, FileSource):
            continue
        parts = part_files(Path(source.path))
        if not parts:
            continue
        join_key = fv.entity_columns[0].name
        table = ds.dataset([str(p) for p in parts], format="parquet").to_table(
            columns=[join_key, source.timestamp_field]
        )
        latest = table.group_by(join_key).aggregate([(source.timestamp_field, "max")])
        times = latest.column(f"{source.timestamp_field}_max").to_pylist()
        for uid, t in zip(latest.column(join_key).to_pylist(), times, strict=True):
            t = t.astimezone(UTC)
            newest[uid] = max(newest.get(uid, t), t)
    return newest


def _equal(online: Any, offline: Any) -> bool:
    online_missing = online is None or (isinstance(online, float) and math.isnan(online))
    offline_missing = offline is None or (isinstance(offline, float) and math.isnan(offline))
    if online_missing or offline_missing:
        return online_missing and offline_missing
    if isinstance(online, list | tuple | np.ndarray) or isinstance(offline, list | tuple | np.ndarray):
        a = np.asarray(online, dtype=np.float64)
        b = np.asarray(offline, dtype=np.float64)
        return a.shape == b.shape and bool(np.all(np.abs(a - b) <= TOLERANCE * np.maximum(1.0, np.abs(b))))
    if isinstance(online, bool | np.bool_) or isinstance(offline, bool | np.bool_):
        return bool(online) == bool(offline) and type(online) is not str
    if isinstance(online, float) or isinstance(offline, float | np.floating):
        return abs(float(online) - float(offline)) <= TOLERANCE * max(1.0, abs(float(offline)))
    if isinstance(online, int | np.integer) and isinstance(offline, int | np.integer):
        return int(online) == int(offline)
    return bool(online == offline)


def _offline_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def compare_store(
    store: FeatureStore,
    user_ids: list[int],
    as_of: datetime,
    views: list[FeatureView],
    report_first: int = 20,
    as_of_by_user: Mapping[int, datetime] | None = None,
) -> tuple[int, list[Mismatch]]:
    """Compare online and offline values of ``user_ids`` for every feature of ``views``, offline
    as of ``as_of`` (or the user's own time in ``as_of_by_user``)."""
    join_key = views[0].entity_columns[0].name
    refs = [f"{fv.name}:{f.name}" for fv in views for f in fv.features]
    online = store.get_online_features(
        features=refs, entity_rows=[{join_key: uid} for uid in user_ids], full_feature_names=True
    ).to_dict()
    times = [pd.Timestamp((as_of_by_user or {}).get(uid, as_of)) for uid in user_ids]
    entity_df = pd.DataFrame({join_key: user_ids, "event_timestamp": times})
    offline = store.get_historical_features(
        entity_df=entity_df, features=refs, full_feature_names=True
    ).to_df()
    offline = offline.set_index(join_key)
    count = 0
    found: list[Mismatch] = []
    for row, uid in enumerate(online[join_key]):
        for ref in refs:
            column = ref.replace(":", "__")
            online_value = online[column][row]
            offline_value = _offline_value(offline.at[uid, column])
            if not _equal(online_value, offline_value):
                count += 1
                if len(found) < report_first:
                    found.append(Mismatch(int(uid), ref, online_value, offline_value))
    return count, found


def check_consistency(settings: Settings, sample: int = 200, seed: int = 0) -> ConsistencyReport:
    """Sample ``sample`` users (seeded), add every refreshed user, and check that the online store
    serves, feature by feature, the offline point-in-time values as of the materialization end
    (a refreshed user: as of their latest refresh, if later)."""
    if sample < 1:
        from churnfs.errors import InvalidInputError

        raise InvalidInputError(f"sample must be > 0, got {sample}")
    store = get_store(settings)
    views = sorted((fv for fv in store.list_feature_views() if fv.online), key=lambda fv: fv.name)
    if not views:
        raise MissingDataError(f"no online feature views in {settings.registry_path}: run `make apply` first")
    as_of = _materialization_end(views)
    join_key = views[0].entity_columns[0].name
    known = _users_known_at(views, as_of, join_key)
    if len(known) == 0:
        raise MissingDataError(f"no offline rows at or before {as_of}: run `make features` first")
    rng = np.random.default_rng(seed)
    sampled = rng.choice(known, size=min(sample, len(known)), replace=False).tolist()
    refreshed = refreshed_users(views)
    users = sorted({int(u) for u in sampled} | set(refreshed))
    later = {uid: t for uid, t in refreshed.items() if t > as_of}
    count, found = compare_store(store, users, as_of, views, as_of_by_user=later)
    n_features = sum(len(fv.features) for fv in views)
    return ConsistencyReport(
        as_of=as_of,
        users=len(users),
        features=n_features,
        mismatch_count=count,
        mismatches=found,
        user_ids=users,
        refreshed_user_ids=sorted(refreshed),
    )
