"""Stored Feast values decode to exactly what Feast's own conversion gives, layout by layout."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from churnfs.store.decoding import ValueDecoder

CASES = [
    (ValueType.DOUBLE, [0.0, -1.5, 1e300, 123456.789, float("inf")]),
    (ValueType.FLOAT, [0.0, 0.1, -3.25]),
    (ValueType.INT64, [0, 1, -7, 2**62]),
    (ValueType.INT32, [0, 5, -5]),
    (ValueType.STRING, ["", "US", "android", "ünïcode"]),
    (ValueType.BOOL, [True, False]),
    (ValueType.FLOAT_LIST, [[], [0.1, 0.2, 0.7], list(np.linspace(-1, 1, 384, dtype=np.float32))]),
    (ValueType.DOUBLE_LIST, [[], [0.1, 1e-300]]),
    (ValueType.STRING_LIST, [["a", "b"], []]),
]


def _feast(raw: bytes, value_type: ValueType) -> object:
    """What Feast's read path gives: parse the stored cell, then ``to_dict``'s conversion."""
    proto = ValueProto()
    if raw:
        proto.ParseFromString(raw)
    return feast_value_type_to_python_type(proto, value_type)


@pytest.mark.parametrize(("value_type", "values"), CASES, ids=[c[0].name for c in CASES])
def test_every_stored_value_decodes_to_feasts_python_value(
    value_type: ValueType, values: list[object]
) -> None:
    decode = ValueDecoder().decoder(value_type)
    for proto in python_values_to_proto_values(values, value_type):
        raw = proto.SerializeToString()
        want = _feast(raw, value_type)
        for _ in range(2):  # the second time from the memo where there is one
            got = decode(raw)
            assert got == want and type(got) is type(want), (value_type, got, want)


def test_missing_and_empty_cells_are_none_like_feasts() -> None:
    decode = ValueDecoder().decoder(ValueType.DOUBLE)
    assert decode(None) is None and _feast(b"", ValueType.DOUBLE) is None
    assert decode(b"") is None


def test_an_unpacked_float_list_falls_back_to_feasts_parse() -> None:
    # FloatList.val written element by element (tag 0x0d each), which protobuf also accepts.
    inner = b"".join(b"\x0d" + np.float32(v).tobytes() for v in (0.5, -2.0))
    raw = b"\x82\x01" + bytes([len(inner)]) + inner
    got = ValueDecoder().decoder(ValueType.FLOAT_LIST)(raw)
    assert got == _feast(raw, ValueType.FLOAT_LIST) == [0.5, -2.0]


def test_decoded_lists_are_never_shared_between_calls() -> None:
    decode = ValueDecoder().decoder(ValueType.FLOAT_LIST)
    raw = python_values_to_proto_values([[1.0, 2.0]], ValueType.FLOAT_LIST)[0].SerializeToString()
    first = decode(raw)
    first.append(3.0)
    assert decode(raw) == [1.0, 2.0]


@pytest.mark.parametrize("nanos", [0, 1, 500_000_000, 999_999_499, 999_999_999])
def test_event_seconds_match_feasts_read_path(nanos: int) -> None:
    stored = Timestamp(seconds=1_751_846_400, nanos=nanos)
    raw = stored.SerializeToString()
    when, _ = RedisOnlineStore()._get_features_for_entity([b"", raw], "v", ["f", "_ts:v"])
    assert when is not None
    expected = Timestamp()
    expected.FromDatetime(when)  # what the response carries, and to_dict's ``__ts`` seconds
    assert ValueDecoder().event_seconds(raw) == expected.seconds


def test_a_missing_event_time_is_second_zero_like_feasts() -> None:
    when, _ = RedisOnlineStore()._get_features_for_entity([b"", None], "v", ["f", "_ts:v"])
    assert when == datetime.fromtimestamp(0, UTC)
    assert ValueDecoder().event_seconds(None) == 0
