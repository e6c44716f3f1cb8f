"""The stream path's micro-batch logic: raw events to and from stream entries, de-duplication by
``event_id``, the as-of time of a micro-batch, and the affected users' activity rows.

A stream entry carries one raw ``event_logs`` row, each column as text (``encode_events``); the
consumer (``churnfs.stream``) decodes a micro-batch back into a conformed raw table
(``decode_entries``), validates it with the batch job's ``transformations.groups.validate``, and
recomputes the touched users with the batch job's ``group_views`` over the raw store (the
generated file plus the parts the stream appended), so a streamed value is the value the batch job
computes for the same user and as-of time. Only the trigger and the I/O differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnfs.settings import Settings
from churnfs.world import WorldSpec
from transformations.groups import GROUP_VIEWS, group_views, read_raw_table, validate
from transformations.validation import RAW_SCHEMAS, conform

EVENT_FIELDS: tuple[str, ...] = tuple(RAW_SCHEMAS["event_logs"])
"""The fields of a stream entry: the raw ``event_logs`` columns (a null column is left out)."""
_INT_FIELDS = ("event_id", "user_id", "session_id")
_TEXT_FIELDS = ("event_type", "metadata")
STREAM_ID = "stream_id"
"""The column holding each row's stream entry id (``<ms>-<seq>``) in decoded and quarantined rows."""
MALFORMED = "malformed_entry"
"""The quarantine reason of an entry that is not an event at all (a field that does not parse)."""
ACTIVITY_VIEW = GROUP_VIEWS["activity"][0]


def encode_events(events: pa.Table) -> list[dict[str, str]]:
    """One stream entry per raw event, in table order: integers in decimal, the time as ISO 8601
    UTC with microseconds, strings as they are; a null column is left out of its entry."""
    rows = conform("event_logs", events).to_pylist()
    out = []
    for row in rows:
        entry = {}
        for name in EVENT_FIELDS:
            value = row[name]
            if value is None:
                continue
            entry[name] = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)
        out.append(entry)
    return out


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class DecodedBatch(NamedTuple):
    """A micro-batch's entries as raw ``event_logs`` rows (plus ``stream_id``), and the entries
    that are no event (the same columns, what could be read, plus ``reason``)."""

    events: pa.Table
    malformed: pa.Table


def _parse(fields: Mapping[str, str]) -> dict[str, object]:
    """One entry's fields as typed values; raises ValueError naming the first bad field."""
    row: dict[str, object] = {}
    for name in _INT_FIELDS:
        text = fields.get(name)
        if text is None:
            if name == "event_id":
                raise ValueError("event_id missing")
            row[name] = None
            continue
        try:
            row[name] = int(text)
        except ValueError:
            raise ValueError(f"{name} {text[:40]!r} is not an integer") from None
    text = fields.get("event_timestamp")
    if text is None:
        row["event_timestamp"] = None
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"event_timestamp {text[:40]!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise ValueError(f"event_timestamp {text[:40]!r} has no time zone")
        row["event_timestamp"] = when.astimezone(UTC)
    for name in _TEXT_FIELDS:
        row[name] = fields.get(name)
    return row


def _lenient(fields: Mapping[str, str]) -> dict[str, object]:
    """What can be read of a malformed entry (a field that does not parse is null)."""
    row: dict[str, object] = {}
    for name in EVENT_FIELDS:
        try:
            row[name] = _parse({"event_id": "0", **{k: v for k, v in fields.items() if k == name}})[name]
        except ValueError:
            row[name] = None
    return row


_EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.int64()),
        ("user_id", pa.int64()),
        ("session_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("event_type", pa.string()),
        ("metadata", pa.string()),
    ]
)


def _event_table(rows: list[dict[str, object]], stream_ids: list[str]) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=_EVENT_SCHEMA)
    return table.append_column(STREAM_ID, pa.array(stream_ids, type=pa.string()))


_FIELD_KEYS = tuple(field.name.encode() for field in _EVENT_SCHEMA)


def _decode_columns(entries: Sequence[tuple[Any, Mapping[Any, Any]]]) -> pa.Table | None:
    """The entries as an event table, a column at a time with Arrow's strict parsers; None when
    any entry needs a closer look (text keys, a missing ``event_id``, a value Arrow does not parse
    the way ``_parse`` would), which ``decode_entries`` then gives one entry at a time."""
    if not all(b"event_id" in fields for _, fields in entries):
        return None
    columns = []
    try:
        for key, field in zip(_FIELD_KEYS, _EVENT_SCHEMA, strict=True):
            text = pa.array([fields.get(key) for _, fields in entries], type=pa.binary()).cast(pa.string())
            columns.append(text.cast(field.type))
        ids = pa.array([entry_id for entry_id, _ in entries], type=pa.binary()).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return pa.Table.from_arrays(
        [*columns, ids], schema=_EVENT_SCHEMA.append(pa.field(STREAM_ID, pa.string()))
    )


def decode_entries(entries: Iterable[tuple[Any, Mapping[Any, Any]]]) -> DecodedBatch:
    """Decode ``(entry id, fields)`` pairs as read from the stream (bytes or text): the entries
    that parse as events, and the others with a ``malformed_entry`` reason naming the bad field.
    A batch of well-formed entries is decoded a column at a time; one with a bad entry, one entry
    at a time."""
    entries = list(entries)
    columns = _decode_columns(entries)
    if columns is not None:
        return DecodedBatch(columns, _event_table([], []).append_column("reason", pa.array([], pa.string())))
    good: list[dict[str, object]] = []
    good_ids: list[str] = []
    bad: list[dict[str, object]] = []
    bad_ids: list[str] = []
    reasons: list[str] = []
    for entry_id, raw_fields in entries:
        fields = {_text(k): _text(v) for k, v in raw_fields.items()}
        try:
            good.append(_parse(fields))
            good_ids.append(_text(entry_id))
        except ValueError as exc:
            bad.append(_lenient(fields))
            bad_ids.append(_text(entry_id))
            reasons.append(f"{MALFORMED}: {exc}")
    malformed = _event_table(bad, bad_ids).append_column("reason", pa.array(reasons, type=pa.string()))
    return DecodedBatch(_event_table(good, good_ids), malformed)


class Dedup(NamedTuple):
    """The events of a micro-batch not yet in the raw store (first of each ``event_id``), and how
    many were left out as repeats (a re-delivered entry, or an event published twice)."""

    new: pa.Table
    repeats: int


def drop_known_events(events: pa.Table, known: np.ndarray) -> Dedup:
    """Keep the first row of each ``event_id`` not in ``known`` (sorted ids already stored): what
    makes processing idempotent."""
    ids = np.asarray(events.column("event_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(ids.size, dtype=bool)
    keep[first] = True
    if known.size:
        at = np.minimum(np.searchsorted(known, ids), known.size - 1)
        keep &= known[at] != ids
    return Dedup(events.filter(pa.array(keep)), int(ids.size - keep.sum()))


def merge_ids(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``known`` (sorted, unique) with ``ids`` added, still sorted and unique. Inserting a
    micro-batch's few ids costs one copy of ``known``; re-sorting the union (``np.union1d``) hashed
    every stored id again, most of a micro-batch's time on a world of a million events."""
    new = np.unique(np.asarray(ids, dtype=np.int64))
    if known.size and new.size:
        at = np.minimum(np.searchsorted(known, new), known.size - 1)
        new = new[known[at] != new]
    if not new.size:
        return known
    return np.insert(known, np.searchsorted(known, new), new)


def horizon(newest: datetime) -> datetime:
    """The first whole second after ``newest``: an as-of time at which that event counts (features
    as of ``t`` read events strictly before ``t``, and the online store keeps whole seconds)."""
    return newest.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)


def stream_as_of(newest: datetime, clock: datetime | None, end: datetime) -> datetime:
    """The as-of time of a micro-batch whose newest event is ``newest``: its ``horizon``, never
    before the stream's clock (the latest as-of time already written, so no consumer writes a user
    back in time) and never past the world's ``end``."""
    as_of = horizon(newest)
    if clock is not None and clock > as_of:
        as_of = clock
    return min(as_of, end)


def activity_rows(
    settings: Settings, users: pa.Table, events: pa.Table, user_ids: Sequence[int], as_of: datetime
) -> pa.Table:
    """The activity rows of ``user_ids`` as of ``as_of`` with the batch job's group function
    (users not signed up before ``as_of`` get none).

    Args:
        users: the clean ``user_table`` rows (every user, or at least those of ``user_ids``).
        events: clean, parsed events (``validate``'s output) holding at least every stored event
            of ``user_ids``; other users' events are left out.
    """
    ids = pa.array(sorted({int(u) for u in user_ids}), type=pa.int64())
    chosen = users.filter(pc.is_in(users.column("user_id"), value_set=ids))
    theirs = events.filter(pc.is_in(events.column("user_id"), value_set=ids))
    return group_views("activity", chosen, theirs, [as_of], settings)[ACTIVITY_VIEW]


def recompute_activity(
    settings: Settings, users: pa.Table, user_ids: Sequence[int], as_of: datetime, spec: WorldSpec
) -> pa.Table:
    """``activity_rows`` from the raw store on disk (the generated file and the stream's parts,
    read for these users only and validated like the batch job): what the consumer's in-memory
    copy of the clean events must give."""
    ids = sorted({int(u) for u in user_ids})
    raw = read_raw_table(settings, "event_logs", user_ids=ids)
    chosen = users.filter(pc.is_in(users.column("user_id"), value_set=pa.array(ids, type=pa.int64())))
    split = validate("event_logs", raw, chosen, spec)
    return activity_rows(settings, chosen, split.clean, ids, as_of)


def quarantine_rows(quarantined: pa.Table) -> pa.Table:
    """Rows for the stream's quarantine: the raw columns, ``stream_id`` and ``reason``."""
    columns = [*EVENT_FIELDS, STREAM_ID, "reason"]
    return quarantined.select(columns)
