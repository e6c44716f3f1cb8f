"""Feast's Redis online-store format, encoded a column at a time.

Feast stores one Redis hash per entity: the key is ``serialize_entity_key(entity) + project``;
each feature is a field ``mmh3("<view>:<feature>")`` holding a serialised ``feast.types.Value``
protobuf; ``_ts:<view>`` holds the row's event time as a serialised protobuf ``Timestamp``
(feast/infra/online_stores/redis.py, ``online_write_batch``).

Feast builds those bytes one Python object per cell (about 1,700 rows/s per view). Here fixed-width
cells (doubles, booleans, fixed-length float vectors, int64 entity keys) are laid out with numpy,
and columns with few distinct values (counts, categories, timestamps) are serialised once per
distinct value by Feast's own converter. ``verify_against_feast`` checks the result byte for byte
against Feast's converter, so a Feast upgrade that changes the format fails loudly, not silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

# Protobuf tags of feast.types.Value's oneof fields (field number << 3 | wire type).
_DOUBLE_TAG = b"\x29"  # double_val = 5, fixed64
_FLOAT_TAG = b"\x35"  # float_val = 6, fixed32
_FLOAT_LIST_TAG = b"\x82\x01"  # float_list_val = 16, length-delimited
_DOUBLE_LIST_TAG = b"\x7a"  # double_list_val = 15, length-delimited
_PACKED_VAL_TAG = b"\x0a"  # FloatList.val / DoubleList.val = 1, packed


class UnsupportedColumnError(ValueError):
    """A column type this codec does not lay out itself (the caller falls back to Feast)."""


@dataclass(frozen=True)
class Cells:
    """One encoded column: a fixed-width byte matrix (one row per entity), one bytes object per
    entity, or a few distinct bytes objects and each entity's index into them."""

    fixed: np.ndarray | None = None
    objects: list[bytes] | None = None
    distinct: list[bytes] | None = None
    inverse: np.ndarray | None = None


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_key(view_name: str, feature: str) -> bytes:
    """The hash field Feast uses for one feature of one view."""
    return bytes(_mmh3(f"{view_name}:{feature}"))


def timestamp_field(view_name: str) -> bytes:
    return f"_ts:{view_name}".encode()


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _constant(n: int, data: bytes) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(data, dtype=np.uint8), (n, len(data)))


def entity_keys_int64(values: np.ndarray, join_key: str, project: str) -> np.ndarray:
    """Feast's Redis keys (entity key serialization v3) of single int64 join keys, as an
    ``(n, width)`` byte matrix."""
    probe = serialize_entity_key(
        EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(int64_val=0)]),
        entity_key_serialization_version=3,
    )
    prefix = probe[:-8]  # ... INT64 type, length 8, then the value as little-endian int64
    le = np.ascontiguousarray(values.astype("<i8")).view(np.uint8).reshape(-1, 8)
    n = len(values)
    return np.hstack([_constant(n, prefix), le, _constant(n, project.encode("utf-8"))])


def _value_type(dtype: object) -> ValueType:
    return dtype.to_value_type()  # type: ignore[attr-defined,no-any-return]


def _by_distinct_value(column: pa.Array | pa.ChunkedArray, value_type: ValueType) -> Cells:
    """Serialise each distinct value once with Feast's own converter."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded_column = column.dictionary_encode()
    distinct = encoded_column.dictionary.to_numpy(zero_copy_only=False)
    inverse = encoded_column.indices.to_numpy(zero_copy_only=False)
    encoded = [p.SerializeToString() for p in python_values_to_proto_values(distinct, value_type)]
    return Cells(distinct=encoded, inverse=inverse)


def _float_vectors(column: pa.Array, tag: bytes, np_dtype: type[np.floating]) -> Cells:
    """Packed float lists; fixed-width when every list has the same length."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise UnsupportedColumnError("null vectors")
    if isinstance(column, pa.FixedSizeListArray):
        column = column.cast(pa.list_(column.type.value_type))
    offsets = column.offsets.to_numpy()
    lengths = np.diff(offsets)
    n = len(column)
    flat = column.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    flat = np.ascontiguousarray(flat.astype(np_dtype))
    item = np.dtype(np_dtype).itemsize
    if n and np.all(lengths == lengths[0]):
        width = int(lengths[0])
        inner = _PACKED_VAL_TAG + varint(width * item) if width else b""
        header = tag + varint(len(inner) + width * item) + inner
        body = flat.view(np.uint8).reshape(n, width * item)
        return Cells(fixed=np.hstack([_constant(n, header), body]))
    out = []
    raw = flat.tobytes()
    for start, length in zip((offsets[:-1] - offsets[0]).tolist(), lengths.tolist(), strict=True):
        payload = raw[start * item : (start + length) * item]
        inner = _PACKED_VAL_TAG + varint(len(payload)) + payload if length else b""
        out.append(tag + varint(len(inner)) + inner)
    return Cells(objects=out)


def encode_values(column: pa.Array | pa.ChunkedArray, dtype: object) -> Cells:
    """Serialised ``feast.types.Value`` of every cell of a column of Feast type ``dtype``."""
    if column.null_count:
        # Feast's null handling varies by type; leave those columns to Feast's converter.
        raise UnsupportedColumnError("nulls")
    if dtype == Float64:
        values = np.ascontiguousarray(column.to_numpy(zero_copy_only=False).astype("<f8"))
        if np.isnan(values).any():
            raise UnsupportedColumnError("NaN (Feast stores it as a missing value)")
        body = values.view(np.uint8).reshape(-1, 8)
        return Cells(fixed=np.hstack([_constant(len(values), _DOUBLE_TAG), body]))
    if dtype == Float32:
        values = np.ascontiguousarray(column.to_numpy(zero_copy_only=False).astype("<f4"))
        if np.isnan(values).any():
            raise UnsupportedColumnError("NaN (Feast stores it as a missing value)")
        body = values.view(np.uint8).reshape(-1, 4)
        return Cells(fixed=np.hstack([_constant(len(values), _FLOAT_TAG), body]))
    if dtype in (Int64, Int32, String, Bool):
        return _by_distinct_value(column, _value_type(dtype))
    if dtype == Array(Float32):
        return _float_vectors(column, _FLOAT_LIST_TAG, np.float32)
    if dtype == Array(Float64):
        return _float_vectors(column, _DOUBLE_LIST_TAG, np.float64)
    raise UnsupportedColumnError(str(dtype))


def encode_timestamps(column: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """Serialised protobuf ``Timestamp`` of each event time, as Feast writes to ``_ts:<view>``."""
    return timestamp_cells(column).objects or []


def timestamp_cells(column: pa.Array | pa.ChunkedArray) -> Cells:
    """Event times as serialised protobuf ``Timestamp``s, one per distinct time."""
    micros = column.cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    distinct, inverse = np.unique(micros.astype(np.int64), return_inverse=True)
    encoded = []
    for us in distinct.tolist():
        ts = Timestamp()
        ts.FromMicroseconds(us)
        encoded.append(ts.SerializeToString())
    return Cells(objects=[encoded[i] for i in inverse.tolist()], distinct=encoded, inverse=inverse)


def _rows(
    n: int, prefix: Sequence[np.ndarray], fields: Sequence[bytes], cells: Sequence[Cells]
) -> list[bytes]:
    """Per row: the fixed-width ``prefix`` columns, then a RESP bulk of each field and its value.

    Fixed-width cells of every field are laid side by side in one matrix, so most of a row is
    produced by numpy; only variable-width cells are joined in Python."""
    fixed_parts = list(prefix)
    variable: list[list[bytes]] = []
    for field, cell in zip(fields, cells, strict=True):
        name = _bulk(field)
        if cell.fixed is not None:
            width = cell.fixed.shape[1]
            fixed_parts += [_constant(n, name + b"$%d\r\n" % width), cell.fixed, _constant(n, b"\r\n")]
        elif cell.distinct is not None:
            assert cell.inverse is not None
            formatted = [b"%b$%d\r\n%b\r\n" % (name, len(v), v) for v in cell.distinct]
            variable.append([formatted[i] for i in cell.inverse.tolist()])
        else:
            assert cell.objects is not None
            variable.append([b"%b$%d\r\n%b\r\n" % (name, len(v), v) for v in cell.objects])
    if fixed_parts:
        matrix = np.hstack(fixed_parts)
        raw = matrix.tobytes()
        width = matrix.shape[1]
        rows = [raw[i * width : (i + 1) * width] for i in range(n)]
    else:
        rows = [b""] * n
    if not variable:
        return rows
    return [b"".join(parts) for parts in zip(rows, *variable, strict=True)]


def hset_commands(keys: np.ndarray, fields: Sequence[bytes], cells: Sequence[Cells]) -> list[bytes]:
    """RESP-encoded ``HSET key field value ...`` per row, one bytes object per row."""
    n = keys.shape[0]
    head = b"*%d\r\n$4\r\nHSET\r\n$%d\r\n" % (2 + 2 * len(fields), keys.shape[1])
    return _rows(n, [_constant(n, head), keys, _constant(n, b"\r\n")], fields, cells)


def field_value_arguments(n: int, fields: Sequence[bytes], cells: Sequence[Cells]) -> list[bytes]:
    """Per row, the RESP bulks ``field value ...`` of an HSET (``2 * len(fields)`` arguments)."""
    return _rows(n, [], fields, cells)


@dataclass(frozen=True)
class RowArguments:
    """Some rows' HSET arguments (``field_value_arguments``) and which keys they belong to."""

    positions: np.ndarray  # index of each row's key, ascending
    arguments: list[bytes]
    per_row: int  # arguments in each row (twice the fields)


def joined_hset_commands(keys: np.ndarray, parts: Sequence[RowArguments]) -> list[bytes]:
    """One ``HSET`` per key with the arguments of every part that has a row for it (keys without
    any are left out), in the order of ``keys``."""
    n, width = keys.shape
    counts = np.zeros(n, dtype=np.int64)
    pieces: list[list[bytes]] = [[] for _ in range(n)]
    for part in parts:
        counts[part.positions] += part.per_row
        for position, arguments in zip(part.positions.tolist(), part.arguments, strict=True):
            pieces[position].append(arguments)
    raw = keys.tobytes()
    head = b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%b\r\n"
    return [
        head % (2 + count, width, raw[i * width : (i + 1) * width]) + b"".join(pieces[i])
        for i, count in enumerate(counts.tolist())
        if count
    ]


def command(*arguments: bytes) -> bytes:
    """One RESP-encoded command."""
    return b"*%d\r\n" % len(arguments) + b"".join(_bulk(a) for a in arguments)


def evalsha_command(sha: bytes, keys: np.ndarray, arguments: Sequence[bytes]) -> bytes:
    """RESP-encoded ``EVALSHA sha numkeys key ... argument ...`` with the rows of ``keys`` as keys."""
    n = keys.shape[0]
    key_bulks = np.hstack([_constant(n, b"$%d\r\n" % keys.shape[1]), keys, _constant(n, b"\r\n")])
    head = b"*%d\r\n" % (3 + n + len(arguments)) + _bulk(b"EVALSHA") + _bulk(sha) + _bulk(b"%d" % n)
    return head + key_bulks.tobytes() + b"".join(_bulk(a) for a in arguments)


def expire_commands(keys: np.ndarray, seconds: int) -> list[bytes]:
    n = keys.shape[0]
    head = b"*3\r\n$6\r\nEXPIRE\r\n$%d\r\n" % keys.shape[1]
    matrix = np.hstack([_constant(n, head), keys, _constant(n, b"\r\n" + _bulk(str(seconds).encode()))])
    raw = matrix.tobytes()
    width = matrix.shape[1]
    return [raw[i * width : (i + 1) * width] for i in range(n)]


def cell_bytes(cells: Cells, row: int) -> bytes:
    if cells.fixed is not None:
        return cells.fixed[row].tobytes()
    if cells.distinct is not None:
        assert cells.inverse is not None
        return cells.distinct[int(cells.inverse[row])]
    assert cells.objects is not None
    return cells.objects[row]


def verify_against_feast(
    view: FeatureView,
    project: str,
    table: pa.Table,
    keys: np.ndarray,
    cells: dict[str, Cells],
    timestamps: list[bytes],
    rows: int = 32,
) -> None:
    """Compare the first ``rows`` rows with what Feast's own conversion would write.

    Raises AssertionError naming the first difference."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.utils import _convert_arrow_to_proto

    sample = table.slice(0, rows).combine_chunks()
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    expected = _convert_arrow_to_proto(sample, view, join_keys)
    for i, (entity_key, values, event_ts, _) in enumerate(expected):
        key = _redis_key(project, entity_key, entity_key_serialization_version=3)
        if key != keys[i].tobytes():
            raise AssertionError(f"{view.name}: Redis key of row {i} differs from Feast's")
        ts = Timestamp()
        ts.FromDatetime(event_ts)
        if ts.SerializeToString() != timestamps[i]:
            raise AssertionError(f"{view.name}: event time of row {i} differs from Feast's")
        for name, value in values.items():
            if value.SerializeToString() != cell_bytes(cells[name], i):
                raise AssertionError(f"{view.name}.{name}: value of row {i} differs from Feast's")
