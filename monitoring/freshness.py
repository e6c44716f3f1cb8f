"""Feature freshness: how old the online store's newest values are, against each view's TTL.

Ages are measured from the world's present (the newest as-of time in the offline store): the
synthetic world's clock is not the wall clock. When the Feast registry or the online store
cannot be reached the section says so and the run goes on: freshness never hides the drift
checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from churnfs.settings import Settings

logger = logging.getLogger(__name__)

TIMESTAMP_SUFFIX = "__ts"
ENTITY_KEY = "user_id"


def age_verdict(newest: datetime | None, now: datetime, ttl: timedelta | None) -> dict[str, Any]:
    """Age of the newest value and whether it is past the TTL (a TTL of zero never expires)."""
    if newest is None:
        return {"newest_value": None, "age_hours": None, "stale": True}
    age = now - newest
    expires = ttl is not None and ttl > timedelta(0)
    return {
        "newest_value": newest.isoformat(),
        "age_hours": round(age.total_seconds() / 3600, 2),
        "stale": bool(expires and ttl is not None and age > ttl),
    }


def check_freshness(settings: Settings, user_ids: Sequence[int], now: datetime) -> dict[str, Any]:
    """Per feature view: TTL, materialised-until, the newest online value among ``user_ids``
    and its age at ``now``."""
    if not settings.registry_path.exists():
        # Importing Feast costs seconds: say why there is nothing to check without it.
        return {
            "available": False,
            "note": f"no Feast registry at {settings.registry_path}: run `make apply`",
        }
    try:
        from churnfs.store import get_store

        store = get_store(settings)
        views = store.list_feature_views()
    except Exception as exc:  # any registry problem degrades this section only
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        logger.warning("freshness skipped: %s", first_line)
        return {"available": False, "note": f"Feast registry unavailable ({first_line}): run `make apply`"}

    if not views:
        return {"available": False, "note": f"no feature views in {settings.registry_path}: run `make apply`"}
    rows = [{ENTITY_KEY: int(u)} for u in user_ids]
    out = []
    for view in sorted((v for v in views if v.online), key=lambda v: v.name):
        ttl = view.ttl if isinstance(view.ttl, timedelta) else None
        materialized = getattr(view, "most_recent_end_time", None)
        entry: dict[str, Any] = {
            "feature_view": view.name,
            "ttl_hours": round(ttl.total_seconds() / 3600, 2) if ttl else None,
            "materialized_until": materialized.isoformat() if materialized else None,
        }
        if not view.features or not rows:
            entry.update(age_verdict(None, now, ttl), note="no features or no users to look up")
            out.append(entry)
            continue
        ref = f"{view.name}:{view.features[0].name}"
        try:
            response = store.get_online_features(features=[ref], entity_rows=rows).to_dict(
                include_event_timestamps=True
            )
        except Exception as exc:  # an unreachable online store degrades this section only
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("freshness skipped: %s", first_line)
            return {"available": False, "note": f"online store unavailable ({first_line}): start Redis"}
        stamps = [s for s in response.get(view.features[0].name + TIMESTAMP_SUFFIX, []) if s]
        newest = datetime.fromtimestamp(max(stamps), UTC) if stamps else None
        entry.update(age_verdict(newest, now, ttl))
        entry["users_found"] = len(stamps)
        entry["users_looked_up"] = len(rows)
        out.append(entry)
    return {"available": True, "now": now.isoformat(), "views": out}
