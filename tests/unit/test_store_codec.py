"""The vectorised writer produces Feast's Redis keys and values byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.types import Array, Bool, Float32, Float64, Int64, String
from feast.utils import _convert_arrow_to_proto
from google.protobuf.timestamp_pb2 import Timestamp

from churnfs.store import codec

T0 = datetime(2025, 7, 7, tzinfo=UTC)


def _view() -> FeatureView:
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
    return FeatureView(
        name="v",
        entities=[user],
        schema=[
            Field(name="user_id", dtype=Int64),
            Field(name="count", dtype=Int64),
            Field(name="score", dtype=Float64),
            Field(name="label", dtype=String),
            Field(name="flag", dtype=Bool),
            Field(name="vec", dtype=Array(Float32)),
            Field(name="ragged", dtype=Array(Float32)),
        ],
        source=source,
    )


def _table() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([1, 300, -5, 2**40], type=pa.int64()),
            "event_timestamp": pa.array(
                [T0, T0 - timedelta(days=7), T0 + timedelta(microseconds=123_456), T0],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "count": pa.array([0, 1, -1, 2**62], type=pa.int64()),
            "score": pa.array([0.0, -1.5, 1e-300, 123456.789], type=pa.float64()),
            "label": pa.array(["", "fr", "日本", "fr"]),
            "flag": pa.array([True, False, False, True]),
            "vec": pa.array([[0.0, 1.0], [0.5, -2.25], [1e-3, 3.0], [0.0, 0.0]], type=pa.list_(pa.float32())),
            "ragged": pa.array([[], [1.0], [1.0, 2.0, 3.0], [0.1]], type=pa.list_(pa.float32())),
        }
    )


def _feast_rows(view: FeatureView, table: pa.Table):
    return _convert_arrow_to_proto(table.combine_chunks(), view, {"user_id": ValueType.INT64})


def test_entity_keys_match_feast_redis_keys() -> None:
    view, table = _view(), _table()
    keys = codec.entity_keys_int64(table.column("user_id").to_numpy(), "user_id", "churnfs")
    expected = [_redis_key("churnfs", ek, 3) for ek, _, _, _ in _feast_rows(view, table)]
    assert [row.tobytes() for row in keys] == expected


@pytest.mark.parametrize("feature", ["count", "score", "label", "flag", "vec", "ragged"])
def test_encoded_values_match_feast_serialised_protos(feature: str) -> None:
    view, table = _view(), _table()
    dtype = next(f.dtype for f in view.features if f.name == feature)
    cells = codec.encode_values(table.column(feature), dtype)
    expected = [values[feature].SerializeToString() for _, values, _, _ in _feast_rows(view, table)]
    assert [codec.cell_bytes(cells, i) for i in range(table.num_rows)] == expected


def test_event_times_match_feast_timestamp_protos() -> None:
    view, table = _view(), _table()
    expected = []
    for _, _, event_ts, _ in _feast_rows(view, table):
        ts = Timestamp()
        ts.FromDatetime(event_ts)
        expected.append(ts.SerializeToString())
    assert codec.encode_timestamps(table.column("event_timestamp")) == expected


def test_nan_doubles_are_left_to_feast_which_stores_them_as_missing() -> None:
    with pytest.raises(codec.UnsupportedColumnError):
        codec.encode_values(pa.array([1.0, float("nan")]), Float64)


def test_one_hset_per_key_joins_the_arguments_of_every_view_with_a_row_for_it() -> None:
    keys = np.frombuffer(b"k1k2k3", dtype=np.uint8).reshape(3, 2)
    first = codec.field_value_arguments(
        2,
        [b"f", b"gg"],
        [
            codec.Cells(fixed=np.frombuffer(b"ab", dtype=np.uint8).reshape(2, 1)),
            codec.Cells(objects=[b"", b"xyz"]),
        ],
    )
    assert first == [
        b"$1\r\nf\r\n$1\r\na\r\n$2\r\ngg\r\n$0\r\n\r\n",
        b"$1\r\nf\r\n$1\r\nb\r\n$2\r\ngg\r\n$3\r\nxyz\r\n",
    ]
    second = codec.field_value_arguments(1, [b"h"], [codec.Cells(distinct=[b"v"], inverse=np.array([0]))])
    commands = codec.joined_hset_commands(
        keys,
        [
            codec.RowArguments(np.array([0, 2]), first, 4),  # keys k1 and k3
            codec.RowArguments(np.array([2]), second, 2),  # key k3
        ],
    )
    assert commands == [  # k2 has no row: no command
        b"*6\r\n$4\r\nHSET\r\n$2\r\nk1\r\n" + first[0],
        b"*8\r\n$4\r\nHSET\r\n$2\r\nk3\r\n" + first[1] + b"$1\r\nh\r\n$1\r\nv\r\n",
    ]


def test_evalsha_command_passes_each_key_row_and_the_arguments() -> None:
    keys = np.frombuffer(b"k1k2", dtype=np.uint8).reshape(2, 2)
    assert codec.evalsha_command(b"abc", keys, [b"_ts:v"]) == (
        b"*6\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n$5\r\n_ts:v\r\n"
    )
    assert codec.command(b"SCRIPT", b"LOAD", b"x") == b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$1\r\nx\r\n"


def test_field_keys_are_feast_murmur_hashes() -> None:
    assert codec.field_key("user_activity_features", "total_events") == _mmh3(
        "user_activity_features:total_events"
    )
    assert codec.timestamp_field("v") == b"_ts:v"


def test_verify_against_feast_names_a_differing_feature() -> None:
    view, table = _view(), _table()
    keys = codec.entity_keys_int64(table.column("user_id").to_numpy(), "user_id", "churnfs")
    cells = {f.name: codec.encode_values(table.column(f.name), f.dtype) for f in view.features}
    timestamps = codec.encode_timestamps(table.column("event_timestamp"))
    codec.verify_against_feast(view, "churnfs", table, keys, cells, timestamps)  # identical: no error
    cells["score"] = codec.encode_values(pa.array([9.0, -1.5, 1e-300, 123456.789]), Float64)
    with pytest.raises(AssertionError, match=r"v\.score: value of row 0"):
        codec.verify_against_feast(view, "churnfs", table, keys, cells, timestamps)


def test_hset_command_is_the_resp_encoding_of_key_fields_and_values() -> None:
    keys = np.frombuffer(b"k1k2", dtype=np.uint8).reshape(2, 2)
    cells = [
        codec.Cells(fixed=np.frombuffer(b"ab", dtype=np.uint8).reshape(2, 1)),
        codec.Cells(objects=[b"", b"xyz"]),
    ]
    assert codec.hset_commands(keys, [b"f", b"gg"], cells) == [
        b"*6\r\n$4\r\nHSET\r\n$2\r\nk1\r\n$1\r\nf\r\n$1\r\na\r\n$2\r\ngg\r\n$0\r\n\r\n",
        b"*6\r\n$4\r\nHSET\r\n$2\r\nk2\r\n$1\r\nf\r\n$1\r\nb\r\n$2\r\ngg\r\n$3\r\nxyz\r\n",
    ]
