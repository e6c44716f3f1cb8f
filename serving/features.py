"""One user's feature vector for a feature service: online first, the offline store's latest
snapshot for whatever the online store lacks or when it cannot be reached."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from serving.errors import OnlineStoreUnavailableError
from serving.offline import OfflineSnapshots, ViewRow
from serving.online import FeatureLayout, OnlineFeatures

ONLINE = "online"
OFFLINE = "offline"
REASON_UNREACHABLE = "online_store_unreachable"
REASON_MISSING = "not_in_online_store"
REASON_NO_ONLINE = "no_online_store"


@dataclass(frozen=True)
class ViewOrigin:
    """Where one view's values came from and as of when."""

    source: str | None
    event_timestamp: datetime | None


@dataclass(frozen=True)
class FeatureVector:
    """The merged vector: ``source`` is ``online`` only when every view came from Redis."""

    user_id: int
    source: str
    fallback_reason: str | None
    values: dict[str, Any]
    views: dict[str, ViewOrigin]


def merge_feature_vector(
    user_id: int,
    layout: FeatureLayout,
    online: Mapping[str, ViewRow | None] | None,
    offline: Mapping[str, ViewRow | None],
    online_reason: str | None = None,
) -> FeatureVector | None:
    """Merge one user's online rows (None when the online store was not read) with the offline
    rows, view by view. Returns None when neither store knows the user."""
    values: dict[str, Any] = {}
    views: dict[str, ViewOrigin] = {}
    all_online = online is not None
    found = False
    for view, names in layout.views.items():
        row = online.get(view) if online is not None else None
        source: str | None = ONLINE
        if row is None:
            all_online = False
            row = offline.get(view)
            source = OFFLINE if row is not None else None
        if row is None:
            values.update(dict.fromkeys(names))
            views[view] = ViewOrigin(None, None)
            continue
        found = True
        event_timestamp, row_values = row
        values.update({name: row_values.get(name) for name in names})
        views[view] = ViewOrigin(source, event_timestamp)
    if not found:
        return None
    if all_online:
        return FeatureVector(user_id, ONLINE, None, values, views)
    reason = online_reason or (REASON_NO_ONLINE if online is None else REASON_MISSING)
    return FeatureVector(user_id, OFFLINE, reason, values, views)


class FeatureLookup:
    """Feature vectors for many users at once: one online call, offline lookups where needed."""

    def __init__(
        self, layout: FeatureLayout, online: OnlineFeatures | None, offline: OfflineSnapshots | None
    ) -> None:
        self.layout = layout
        self.online = online
        self.offline = offline

    def _offline_rows(
        self, user_id: int, skip: Mapping[str, ViewRow | None] | None
    ) -> dict[str, ViewRow | None]:
        if self.offline is None:
            return {}
        return {
            view: self.offline.lookup(user_id, view)
            for view in self.layout.views
            if skip is None or skip.get(view) is None
        }

    def get(self, user_ids: Sequence[int]) -> list[FeatureVector | None]:
        """The vector of each user, None for users neither store knows."""
        online_rows: list[dict[str, ViewRow | None]] | None = None
        reason = None
        if self.online is None:
            reason = REASON_NO_ONLINE
        else:
            try:
                online_rows = self.online.read(user_ids)
            except OnlineStoreUnavailableError:
                reason = REASON_UNREACHABLE
        out = []
        for i, user_id in enumerate(user_ids):
            online = online_rows[i] if online_rows is not None else None
            out.append(
                merge_feature_vector(
                    user_id, self.layout, online, self._offline_rows(user_id, online), reason
                )
            )
        return out
