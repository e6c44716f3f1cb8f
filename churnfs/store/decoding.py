"""Stored Feast values straight to the Python values ``OnlineResponse.to_dict`` gives.

Feast's read path parses every stored cell into a ``feast.types.Value`` protobuf, copies it into
the response protobuf, and ``to_dict`` converts it back with ``feast_value_type_to_python_type``:
three Python-level steps per cell, about 12 µs each for 100 users x 32 features. Here a cell goes
from its stored bytes to the Python value in one step:

* doubles, floats and packed float lists (the cells that differ from user to user) are read with
  ``struct``/numpy from their fixed protobuf layout (the layout ``churnfs.store.codec`` writes);
* every other cell (counts, categories, flags) goes through Feast's own parse and conversion once
  per distinct stored value and is then memoised by its bytes (only immutable results are kept);
* a cell whose bytes do not have the exact layout expected falls back to Feast's conversion.

So the values are Feast's by construction; tests/integration/test_online_read.py checks them
against Feast's own ``RedisOnlineStore`` for every feature of every user.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

_DOUBLE_TAG = 0x29  # double_val = 5, fixed64
_FLOAT_TAG = 0x35  # float_val = 6, fixed32
_FLOAT_LIST_TAG = b"\x82\x01"  # float_list_val = 16, length-delimited
_DOUBLE_LIST_TAG = b"\x7a"  # double_list_val = 15, length-delimited
_PACKED_VAL_TAG = 0x0A  # FloatList.val / DoubleList.val = 1, packed
_IMMUTABLE = (type(None), bool, int, float, str, bytes)
MEMO_LIMIT = 65_536  # distinct stored values remembered per value type before starting afresh

_unpack_double = struct.Struct("<d").unpack_from
_unpack_float = struct.Struct("<f").unpack_from


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: its value and the position after it."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _packed_list(raw: bytes, tag: bytes, dtype: str, item: int) -> list[float] | None:
    """A ``FloatList``/``DoubleList`` in its canonical layout (``tag``, length, then one packed
    ``val`` field), or None when ``raw`` has any other layout."""
    if not raw.startswith(tag):
        return None
    size, pos = _varint(raw, len(tag))
    if pos + size != len(raw):
        return None
    if size == 0:
        return []
    if raw[pos] != _PACKED_VAL_TAG:
        return None
    length, start = _varint(raw, pos + 1)
    if start + length != len(raw) or length % item:
        return None
    values: list[float] = np.frombuffer(raw, dtype=dtype, offset=start, count=length // item).tolist()
    return values


class ValueDecoder:
    """Stored ``feast.types.Value`` bytes to Python values, exactly as Feast's ``to_dict`` would
    return them (None for a missing cell)."""

    def __init__(self) -> None:
        self._memo: dict[ValueType | None, dict[bytes, Any]] = {}
        self._seconds: dict[bytes, int] = {}

    def decoder(self, value_type: ValueType | None) -> Callable[[bytes | None], Any]:
        """A function from one stored cell of a feature of ``value_type`` to its Python value."""
        memo = self._memo.setdefault(value_type, {})

        def feast_value(raw: bytes) -> Any:
            value = feast_value_type_to_python_type(ValueProto.FromString(raw), value_type)
            if isinstance(value, _IMMUTABLE):
                if len(memo) >= MEMO_LIMIT:
                    memo.clear()
                memo[raw] = value
            return value

        def decode(raw: bytes | None) -> Any:
            if not raw:
                return None
            hit = memo.get(raw, memo)
            if hit is not memo:
                return hit
            first = raw[0]
            if first == _DOUBLE_TAG and len(raw) == 9:
                return _unpack_double(raw, 1)[0]
            if first == _FLOAT_TAG and len(raw) == 5:
                return _unpack_float(raw, 1)[0]
            if value_type == ValueType.FLOAT_LIST:
                floats = _packed_list(raw, _FLOAT_LIST_TAG, "<f4", 4)
                if floats is not None:
                    return floats
            elif value_type == ValueType.DOUBLE_LIST:
                doubles = _packed_list(raw, _DOUBLE_LIST_TAG, "<f8", 8)
                if doubles is not None:
                    return doubles
            return feast_value(raw)

        return decode

    def event_seconds(self, raw: bytes | None) -> int:
        """Whole seconds of a stored ``_ts:<view>`` event time, computed the way Feast's read path
        does (parse, to a UTC datetime, back to a protobuf Timestamp); 0 when missing."""
        if not raw:
            return 0
        seconds = self._seconds.get(raw)
        if seconds is None:
            parsed = Timestamp.FromString(raw)
            as_datetime = datetime.fromtimestamp(parsed.seconds + parsed.nanos / 1_000_000_000.0, tz=UTC)
            stamp = Timestamp()
            stamp.FromDatetime(as_datetime)
            seconds = stamp.seconds
            if len(self._seconds) >= MEMO_LIMIT:
                self._seconds.clear()
            self._seconds[raw] = seconds
        return seconds
