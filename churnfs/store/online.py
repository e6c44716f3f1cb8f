"""The Redis online store as feature_store.yaml names it: Feast's own, with a safe default and a
faster ``get_online_features``.

Feast expands ``${VAR}`` in feature_store.yaml with ``os.path.expandvars``, which has no default
syntax and leaves an unset variable as the literal text ``${VAR}``. The config subclass maps such a
left-over placeholder to the churnfs default (``Settings().redis_connection_string``), so a bare
``feast apply`` on a laptop talks to the local Redis instead of failing on a host called
``${REDIS_CONNECTION_STRING}`` (and ``${REDIS_TYPE}`` likewise becomes ``redis``).

Writes are Feast's, unchanged: same keys, same values. Reads of many users are where Feast's Redis
store spends its time in Python, not in Redis: it issues one HMGET per user and view, parses each
cell into a protobuf, copies it into the response protobuf, and ``to_dict`` converts it back, one
cell at a time (about 17 ms of CPU for 100 users of ``churn_model_v1``, where Redis needs 1 ms).
``ChurnRedisOnlineStore.get_online_features`` keeps Feast's request handling (feature resolution,
entity validation, errors) and reads the same hashes, but with one HMGET per distinct user for all
views, straight from the stored bytes to the Python columns ``to_dict`` returns
(``churnfs.store.decoding``). Its ``ColumnarOnlineResponse`` builds the response protobuf with
Feast's own code only when something asks for it (``.proto``, ``to_tensor``). Requests it does not
cover (on-demand views, entity-less views, several or non-int64 join keys, version metadata) take
Feast's path unchanged. On a Redis Cluster (``redis_type: redis_cluster``) the HMGETs go through
Feast's own pipelined reader on redis-py's ``RedisCluster``, which sends each to the master of its
key's hash slot, one pipeline per node.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from feast import FeatureService, FeatureView, RepoConfig, utils
from feast.feature_view import DUMMY_ENTITY_ID
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, _versioned_fv_name
from feast.infra.registry.base_registry import BaseRegistry
from feast.online_response import TIMESTAMP_POSTFIX, OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from pydantic import ValidationInfo, field_validator

from churnfs.store.decoding import _IMMUTABLE, ValueDecoder

ONLINE_STORE_TYPE = "churnfs.store.online.ChurnRedisOnlineStore"

_pack_int64 = struct.Struct("<q").pack
# Value types whose Python value is immutable (str, int, float, bool, bytes or None).
_SCALAR_TYPES = {
    ValueType.DOUBLE,
    ValueType.FLOAT,
    ValueType.INT32,
    ValueType.INT64,
    ValueType.STRING,
    ValueType.BOOL,
    ValueType.BYTES,
}
# Value types whose Python value is a list of immutable scalars (copied one level deep).
_FLAT_LIST_TYPES = {
    ValueType.FLOAT_LIST,
    ValueType.DOUBLE_LIST,
    ValueType.INT32_LIST,
    ValueType.INT64_LIST,
    ValueType.STRING_LIST,
    ValueType.BOOL_LIST,
    ValueType.BYTES_LIST,
}


class ChurnRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Feast's Redis config; an unexpanded ``${...}`` connection string or ``redis_type`` means
    "the default" (``REDIS_CONNECTION_STRING``, ``REDIS_TYPE`` of Settings)."""

    type: Literal["churnfs.store.online.ChurnRedisOnlineStore"] = ONLINE_STORE_TYPE  # type: ignore[assignment]

    @field_validator("connection_string", "redis_type", mode="before")
    @classmethod
    def _default_for_unset_variable(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and value.strip().startswith("${"):
            from churnfs.settings import Settings

            settings = Settings()
            return (
                settings.redis_connection_string
                if info.field_name == "connection_string"
                else settings.redis_type
            )
        return value


class _ViewRead:
    """What one feature view contributes to a read: its hash fields and output columns."""

    def __init__(
        self,
        table: FeatureView,
        requested: list[str],
        fields: list[str | bytes],
        fv_name: str,
        names: list[str],
        value_types: list[ValueType | None],
    ) -> None:
        self.table = table
        self.requested = requested  # Feast's list: the features, then "_ts:<view>"
        self.fields = fields
        self.fv_name = fv_name
        self.names = names  # output column names (full names when asked for)
        self.value_types = value_types


class ColumnarOnlineResponse(OnlineResponse):
    """An ``OnlineResponse`` that already holds its ``to_dict`` columns.

    ``to_dict`` (and so ``to_df`` and ``to_arrow``) returns the decoded columns; the protobuf
    ``proto`` is built on first access, from the same Redis replies, by Feast's own conversion."""

    def __init__(
        self,
        columns: dict[str, list[Any]],
        seconds: dict[str, list[int]],
        feature_types: dict[str, ValueType],
        build_proto: Callable[[], GetOnlineFeaturesResponse],
        flat_lists: set[str],
        scalars: set[str],
    ) -> None:
        self._columns = columns
        self._flat_lists = {n for n, values in columns.items() if n in flat_lists}
        self._mutable = {
            n
            for n, values in columns.items()
            if n not in flat_lists and n not in scalars and any(not isinstance(v, _IMMUTABLE) for v in values)
        }
        self._event_seconds = seconds
        self._feature_types = feature_types
        self._build_proto: Callable[[], GetOnlineFeaturesResponse] | None = build_proto
        self._proto: GetOnlineFeaturesResponse | None = None

    @property  # type: ignore[override]
    def proto(self) -> GetOnlineFeaturesResponse:
        if self._proto is None:
            assert self._build_proto is not None
            self._proto = self._build_proto()
            self._build_proto = None
        return self._proto

    @proto.setter
    def proto(self, value: GetOnlineFeaturesResponse) -> None:
        self._proto = value

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        """The columns Feast's ``OnlineResponse.to_dict`` returns, as fresh objects each call (a
        caller may mutate them, as it may Feast's)."""
        out: dict[str, Any] = {}
        for name, values in self._columns.items():
            if name in self._flat_lists:
                out[name] = [None if v is None else list(v) for v in values]
            elif name in self._mutable:
                out[name] = copy.deepcopy(values)
            else:
                out[name] = list(values)
            if include_event_timestamps:
                out[name + TIMESTAMP_POSTFIX] = list(self._event_seconds[name])
        return out


class ChurnRedisOnlineStore(RedisOnlineStore):
    """Feast's RedisOnlineStore (the key and value format churnfs.store.codec writes), with a
    columnar read path for ``get_online_features``."""

    _decoder: ValueDecoder | None = None
    _key_prefixes: dict[tuple[str, int], bytes] | None = None

    def get_online_features(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: list[dict[str, Any]] | Mapping[str, Sequence[Any] | Sequence[ValueProto] | Any],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        """Feast's ``get_online_features``, read in one HMGET per distinct entity for all views and
        decoded straight into ``to_dict``'s columns; Feast's own path for what that does not cover."""
        if not include_feature_view_version_metadata:
            response = self._read_columnar(
                config, features, entity_rows, registry, project, full_feature_names
            )
            if response is not None:
                return response
        return super().get_online_features(
            config=config,
            features=features,
            entity_rows=entity_rows,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            include_feature_view_version_metadata=include_feature_view_version_metadata,
        )

    def _entity_key_prefix(self, join_key: str, version: int) -> bytes | None:
        """Feast's serialised entity key of one int64 join key, less its 8 value bytes: the
        serialisation of value v is ``prefix + int64_le(v)`` (checked on two values)."""
        if self._key_prefixes is None:
            self._key_prefixes = {}
        prefix = self._key_prefixes.get((join_key, version))
        if prefix is None:

            def key(v: int) -> bytes:
                proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(int64_val=v)])
                return serialize_entity_key(proto, entity_key_serialization_version=version)

            probe = key(0)
            prefix = probe[:-8]
            if probe != prefix + _pack_int64(0) or key(-(2**62) - 5) != prefix + _pack_int64(-(2**62) - 5):
                prefix = b""  # not a fixed layout in this version: Feast's path
            self._key_prefixes[(join_key, version)] = prefix
        return prefix or None

    def _read_columnar(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: list[dict[str, Any]] | Mapping[str, Any],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool,
    ) -> OnlineResponse | None:
        if isinstance(entity_rows, list):
            if not entity_rows:
                return None
            columnar: dict[str, list[Any]] = {k: [] for k in entity_rows[0]}
            for entity_row in entity_rows:
                for key, value in entity_row.items():
                    if key not in columnar:
                        return None  # Feast's path raises its own error
                    columnar[key].append(value)
            entity_rows = columnar
        (
            join_key_values,
            grouped_refs,
            entity_name_to_join_key_map,
            on_demand_views,
            _,
            requested_result_row_names,
            response_proto,
        ) = utils._prepare_entities_to_read_from_online_store(
            registry=registry,
            project=project,
            features=features,
            entity_values=entity_rows,
            full_feature_names=full_feature_names,
            native_entity_values=True,
        )
        if on_demand_views or not grouped_refs or DUMMY_ENTITY_ID in join_key_values:
            return None
        if isinstance(features, FeatureService) and getattr(features, "precompute_online", False):
            return None
        self._check_versioned_read_support(grouped_refs)

        # One int64 join key shared by every view: one Redis hash per entity holds all of them.
        join_keys = set()
        entity_values: list[ValueProto] = []
        for table, _ in grouped_refs:
            table_values = utils._get_table_entity_values(table, entity_name_to_join_key_map, join_key_values)
            if len(table_values) != 1:
                return None
            ((join_key, entity_values),) = table_values.items()
            join_keys.add(join_key)
        if len(join_keys) != 1 or len(join_key_values) != 1:
            return None
        if list(response_proto.metadata.feature_names.val) != list(join_key_values):
            return None
        (join_key,) = join_keys
        prefix = self._entity_key_prefix(join_key, config.entity_key_serialization_version)
        if prefix is None or any(v.WhichOneof("val") != "int64_val" for v in entity_values):
            return None
        ids = [v.int64_val for v in entity_values]

        views: list[_ViewRead] = []
        for table, requested_features in grouped_refs:
            fv_name = _versioned_fv_name(table, config)
            requested, fields = self._generate_hset_keys_for_features(
                table, requested_features, fv_name_override=fv_name
            )
            table_name = table.projection.name_to_use()
            dtypes = {f.name: f.dtype.to_value_type() for f in table.features}
            wanted = requested[:-1]
            names = [f"{table_name}__{n}" if full_feature_names else n for n in wanted]
            views.append(_ViewRead(table, requested, fields, fv_name, names, [dtypes.get(n) for n in wanted]))

        distinct = list(dict.fromkeys(ids))
        project_bytes = project.encode("utf-8")
        all_fields = [f for view in views for f in view.fields]
        replies = self._read_hash_fields(
            config, [(prefix + _pack_int64(i) + project_bytes, all_fields) for i in distinct]
        )
        by_id = dict(zip(distinct, replies, strict=True))
        rows = cast(list[list[bytes | None]], [by_id[i] for i in ids])

        if self._decoder is None:
            self._decoder = ValueDecoder()
        decoder = self._decoder
        columns: dict[str, list[Any]] = {}
        seconds: dict[str, list[int]] = {}
        entity_names = response_proto.metadata.feature_names.val
        for name, vector in zip(entity_names, response_proto.results, strict=True):
            if name in requested_result_row_names:
                columns[name] = list(ids)
                seconds[name] = [t.seconds for t in vector.event_timestamps]
        start = 0
        for view in views:
            ts_at = start + len(view.names)
            view_seconds = [decoder.event_seconds(row[ts_at]) for row in rows]
            for offset, (name, value_type) in enumerate(zip(view.names, view.value_types, strict=True)):
                if name not in requested_result_row_names:
                    continue
                decode = decoder.decoder(value_type)
                at = start + offset
                columns[name] = [decode(row[at]) for row in rows]
                seconds[name] = view_seconds
            start = ts_at + 1

        def build_proto() -> GetOnlineFeaturesResponse:
            """Feast's response protobuf from the same replies, by Feast's own conversion."""
            start = 0
            for view in views:
                entities, indexes, output_len = utils._get_unique_entities(
                    view.table, join_key_values, entity_name_to_join_key_map
                )
                width = len(view.fields)
                redis_values = [
                    by_id[entity[join_key].int64_val][start : start + width] for entity in entities
                ]
                read_rows = self._convert_redis_values_to_protobuf(redis_values, view.fv_name, view.requested)
                utils._populate_response_from_feature_data(
                    view.requested,
                    read_rows,
                    indexes,
                    response_proto,
                    full_feature_names,
                    view.table,
                    output_len,
                )
                start += width
            utils._drop_unneeded_columns(response_proto, requested_result_row_names)
            return response_proto

        types = {n: t for view in views for n, t in zip(view.names, view.value_types, strict=True)}
        return ColumnarOnlineResponse(
            columns,
            seconds,
            self._build_feature_types(grouped_refs),
            build_proto,
            flat_lists={n for n, t in types.items() if t in _FLAT_LIST_TYPES},
            scalars={n for n, t in types.items() if t in _SCALAR_TYPES} | set(join_key_values),
        )
