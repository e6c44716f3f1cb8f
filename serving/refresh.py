"""Refresh one user: recompute the pushable feature views from the raw tables as of the refresh
clock (``transformations.refresh.refresh_as_of``), with the batch job's own transformation
functions, append the rows to the offline store as parts Feast's offline store reads
(``churnfs.store.parts``), push them to the online store through Feast's push sources, and report
what changed. Training, ``check-consistency`` and the online store then see the same row."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from feast.errors import FeatureViewNotFoundException

from churnfs.errors import ServiceUnavailableError
from churnfs.settings import Settings
from churnfs.store.parts import append_part, conform_to_source, part_name
from serving.errors import OnlineStoreUnavailableError, StaleRefreshError, UnknownUserError
from serving.features import FeatureVector
from serving.online import FeatureLayout
from serving.service import ServingState
from serving.values import changed_features, plain_features

logger = logging.getLogger(__name__)

KEY_COLUMNS = ("user_id", "event_timestamp", "created_timestamp")


def push_sources_by_view(store: Any, layout: FeatureLayout) -> dict[str, str]:
    """The feature views of the service that have a push source, and that source's name."""
    out = {}
    for view in layout.views:
        fv = store.get_feature_view(view, allow_registry_cache=True)
        source = getattr(fv, "stream_source", None)
        if source is not None and type(source).__name__ == "PushSource":
            out[view] = source.name
    return out


def companion_views(store: Any, frames: Mapping[str, pd.DataFrame], layout: FeatureLayout) -> dict[str, str]:
    """Views recomputed with the service's groups but outside the service that have a push
    source too (``user_review_embeddings`` beside ``user_review_features``): a refresh keeps them
    in step, so the online embedding never lags the review stats. View -> push source name."""
    out = {}
    for view in frames:
        if view in layout.views:
            continue
        try:
            fv = store.get_feature_view(view, allow_registry_cache=True)
        except FeatureViewNotFoundException:  # an older registry: nothing to keep in step
            logger.warning("refresh: %s is not in the registry (run `make apply`); not pushed", view)
            continue
        source = getattr(fv, "stream_source", None)
        if source is not None and type(source).__name__ == "PushSource":
            out[view] = source.name
    return out


def _online_values(store: Any, view: str, names: list[str], user_id: int) -> dict[str, Any] | None:
    """A view's current online values for one user (None when it has none; a Redis failure is
    logged and reads as none: the push that follows reports the outage)."""
    import redis

    try:
        values = store.get_online_features(
            features=[f"{view}:{n}" for n in names], entity_rows=[{"user_id": user_id}]
        ).to_dict()
    except redis.RedisError as exc:
        logger.warning("refresh: cannot read %s's previous values of user %s: %s", view, user_id, exc)
        return None
    found = {n: values[n][0] for n in names if n in values}
    return found if any(v is not None for v in found.values()) else None


def offline_row(frame: pd.DataFrame, group_file: Path) -> pa.Table:
    """The recomputed row in the group file's exact schema (column order and types), without
    pandas metadata, so DuckDB and Feast read the part like the batch job's file."""
    return conform_to_source(pa.Table.from_pandas(frame, preserve_index=False), group_file)


def online_writer(settings: Settings) -> Any:
    """A Feast store on the service's registry and online store whose online writes replace a
    stored row of the same event time (Feast's ``skip_dedup``).

    A refresh as of the world's end recomputes the batch job's last snapshot: offline its later
    ``created_timestamp`` wins, but Feast's Redis write rule keeps a stored row whose event time
    is not older, so a plain push would leave the batch values online. ``refresh_user`` refuses
    an as-of time older than the served one first, so this never writes an older row over a newer.
    """
    from churnfs.store import get_store

    writer = get_store(settings, check_online=False)
    writer.config.online_store.skip_dedup = True
    return writer


def stale_views(before: FeatureVector, views: list[str], as_of: datetime) -> dict[str, datetime]:
    """The views whose served snapshot is newer than ``as_of`` (a refresh there would go back in
    time), with that snapshot's event time."""
    out = {}
    for view in views:
        served = before.views[view].event_timestamp if view in before.views else None
        if served is not None and served.astimezone(UTC) > as_of:
            out[view] = served
    return out


def group_name(view: str) -> str:
    """The transformation group behind a feature view (``user_activity_features`` -> ``activity``)."""
    return view.removeprefix("user_").removesuffix("_features")


def _frame_for_view(frames: Mapping[str, pd.DataFrame], view: str) -> pd.DataFrame | None:
    for key in (view, group_name(view)):
        if key in frames:
            return frames[key]
    return None


def refresh_user(state: ServingState, user_id: int) -> dict[str, Any]:
    """Recompute as of the refresh clock, write offline then online, and return the report.

    Raises:
        UnknownUserError: neither store knows the user (new users come with the batch job).
        StaleRefreshError: the clock is behind the user's served snapshot; nothing is written.
        ServiceUnavailableError: no push source in the registry, or the online store is down (the
            rows are then kept offline and served by the fallback).
    """
    lookup = state.ensure_features()
    store, layout = state.store, lookup.layout
    pushable = push_sources_by_view(store, layout)
    if not pushable:
        raise ServiceUnavailableError(
            f"no feature view of {layout.feature_service} has a push source in the registry: run `make apply`"
        )
    before: FeatureVector | None = lookup.get([user_id])[0]
    if before is None:
        # A refresh updates a known user; a new user comes with the batch job, every as-of time of
        # the calendar at once, so training sees their history too.
        raise UnknownUserError(
            f"user {user_id} is in neither the online nor the offline store: new users arrive with the "
            "batch job (`make features` and `make materialize`), refresh updates known ones"
        )
    from transformations.refresh import recompute_user, refresh_as_of

    as_of = refresh_as_of(state.settings)
    stale = stale_views(before, list(pushable), as_of)
    if stale:
        view, served = next(iter(stale.items()))
        raise StaleRefreshError(
            f"the refresh as-of time {as_of.isoformat()} (REFRESH_CLOCK={state.settings.refresh_clock}) "
            f"is before user {user_id}'s latest snapshot of {view} ({served.isoformat()}): nothing was "
            "written; the raw data reaches no further (REFRESH_CLOCK=world refreshes as of the world's end)"
        )

    frames = recompute_user(state.settings, user_id, as_of, [group_name(v) for v in pushable])
    rows: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}
    for view in pushable:
        frame = _frame_for_view(frames, view)
        if frame is None or frame.empty:
            continue
        frame = frame[frame["user_id"] == user_id].tail(1).reset_index(drop=True)
        if frame.empty:
            continue
        rows[view] = (frame, {str(k): v for k, v in frame.iloc[0].items()})
    if not rows:
        raise ServiceUnavailableError(f"recomputing user {user_id} returned no rows: check the raw tables")
    push_source = dict(pushable)
    names_of = {view: list(layout.views[view]) for view in rows}
    for view, source_name in companion_views(store, frames, layout).items():
        frame = frames[view]
        frame = frame[frame["user_id"] == user_id].tail(1).reset_index(drop=True)
        if frame.empty:
            continue
        push_source[view] = source_name
        names_of[view] = [c for c in frame.columns if c not in KEY_COLUMNS]
        rows[view] = (frame, {str(k): v for k, v in frame.iloc[0].items()})

    report_views = []
    offline_dir = state.settings.offline_store_dir
    for view, (frame, row) in rows.items():
        event_timestamp = pd.Timestamp(row["event_timestamp"]).to_pydatetime().astimezone(UTC)
        created = pd.Timestamp(row["created_timestamp"]).to_pydatetime().astimezone(UTC)
        # Offline first: whatever happens to the push, the computed row is kept, as a part of the
        # view's source that Feast's offline store reads with the batch file.
        group_file = offline_dir / f"{view}.parquet"
        path = append_part(
            group_file, offline_row(frame, group_file), part_name(event_timestamp, created, f"user{user_id}")
        )
        values = plain_features({name: row.get(name) for name in names_of[view]})
        if view in layout.views:
            if state.offline is not None:
                state.offline.update(view, user_id, event_timestamp, values)
            previous = before.views[view]
            timestamp_before, source_before = previous.event_timestamp, previous.source
            before_values = {n: before.values.get(n) for n in names_of[view]}
        else:  # a companion view: its previous values come from the online store, if any
            online_before = _online_values(store, view, names_of[view], user_id)
            timestamp_before, source_before = None, "online" if online_before is not None else None
            before_values = plain_features(online_before or {})
        changes = changed_features(before_values, values)
        report_views.append(
            {
                "feature_view": view,
                "push_source": push_source[view],
                "event_timestamp_before": timestamp_before,
                "event_timestamp_after": event_timestamp,
                "source_before": source_before,
                "changed": [{"feature": n, "before": b, "after": a} for n, b, a in changes],
                "unchanged": len(values) - len(changes),
                "offline_path": str(path),
            }
        )

    from feast.data_source import PushMode

    try:
        if state.online is not None and not state.online.is_up and not state.online.check()[0]:
            raise OnlineStoreUnavailableError(state.online.last_error)
        if state.refresh_writer is None:  # one Feast store for every refresh, not one each
            state.refresh_writer = online_writer(state.settings)
        writer = state.refresh_writer
        for view, (frame, _) in rows.items():
            writer.push(push_source[view], frame, to=PushMode.ONLINE)
    except OnlineStoreUnavailableError as exc:
        state.metrics.refreshes.labels(outcome="online_failed").inc()
        raise ServiceUnavailableError(
            f"the online store cannot be reached ({exc}); the recomputed rows of user {user_id} were "
            "appended to the offline store and are served from the fallback: retry when Redis is back"
        ) from None
    except Exception as exc:
        if state.online is not None and type(exc).__module__.startswith("redis"):
            state.online.mark_down(f"push failed: {exc}")
            state.metrics.refreshes.labels(outcome="online_failed").inc()
            raise ServiceUnavailableError(
                f"pushing to the online store failed ({exc}); the recomputed rows of user {user_id} were "
                "appended to the offline store: retry when Redis is back"
            ) from None
        raise
    state.last_refresh = as_of
    state.metrics.refreshes.labels(outcome="ok").inc()
    logger.info("refreshed user %s", user_id, extra={"user_id": user_id, "views": list(rows)})
    return {"user_id": user_id, "as_of": as_of, "online_written": True, "views": report_views}
