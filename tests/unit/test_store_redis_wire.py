"""The Redis connection string and the bulk engine's cluster routing, without a server: every
script call touches the keys of one hash slot only, and every command reaches the master that
owns its key's slot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hiredis
import numpy as np
import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from churnfs.store import codec
from churnfs.store.errors import OnlineStoreUnavailableError
from churnfs.store.redis_servers import connection_nodes, connection_options, describe_connection
from churnfs.store.resp import ClusterWriter


def test_connection_string_lists_every_node_and_parses_options_as_feast_does() -> None:
    text = "10.0.0.1:7000,10.0.0.2:7001,cache,password=s3cret,ssl=true,db=2"
    assert connection_nodes(text) == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("cache", 6379)]
    assert connection_options(text) == {"password": "s3cret", "ssl": True, "db": 2}
    assert describe_connection("127.0.0.1:6380,db=13,password=x") == "127.0.0.1:6380/13"
    assert describe_connection("a:1,b:2,c:3") == "a:1,b:2,c:3"
    with pytest.raises(OnlineStoreUnavailableError, match="not host:port"):
        connection_nodes("redis:port")
    with pytest.raises(OnlineStoreUnavailableError, match="names no host:port"):
        connection_nodes("db=1")


@dataclass
class _Socket:
    replies: list[bytes] = field(default_factory=list)

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0) if self.replies else b""


@dataclass
class _Connection:
    sent: list[bytes] = field(default_factory=list)
    _sock: _Socket = field(default_factory=_Socket)

    def send_packed_command(self, chunks: list[bytes]) -> None:
        self.sent.append(b"".join(chunks))
        if b"SCRIPT" in chunks[0][:40]:
            self._sock.replies.append(b"$40\r\n" + b"a" * 40 + b"\r\n")

    def disconnect(self) -> None:
        pass


@dataclass
class _Pool:
    connection: _Connection = field(default_factory=_Connection)

    def get_connection(self) -> _Connection:
        return self.connection

    def release(self, connection: _Connection) -> None:
        pass


@dataclass
class _Node:
    name: str
    redis_connection: Any = None

    def __post_init__(self) -> None:
        self.redis_connection = type("Client", (), {"connection_pool": _Pool()})()


class _Cluster:
    """What ClusterWriter reads of redis-py's RedisCluster: the slot map and the nodes' pools."""

    def __init__(self, bounds: list[int]) -> None:
        self.nodes = [_Node(f"127.0.0.1:{7000 + i}") for i in range(len(bounds))]
        starts = [0, *bounds[:-1]]
        slots = {}
        for node, start, end in zip(self.nodes, starts, bounds, strict=True):
            slots.update({slot: [node] for slot in range(start, end)})
        self.nodes_manager = type("Manager", (), {"slots_cache": slots})()

    def commands(self, node: _Node) -> list[list[bytes]]:
        reader = hiredis.Reader()
        reader.feed(b"".join(node.redis_connection.connection_pool.connection.sent))
        out = []
        while (command := reader.gets()) is not False:
            out.append(command)
        return out


def _owner(cluster: _Cluster, key: bytes) -> _Node:
    return cluster.nodes_manager.slots_cache[key_slot(key)][0]


def test_cluster_writer_checks_one_slot_per_script_call_on_the_slots_master() -> None:
    cluster = _Cluster([5461, 10923, REDIS_CLUSTER_HASH_SLOTS])
    writer = ClusterWriter(cluster)
    keys = codec.entity_keys_int64(np.arange(1, 400, dtype=np.int64), "user_id", "churnfs")
    ticket = writer.send_check(keys, [b"_ts:v"])
    checked: list[bytes] = []
    for node in cluster.nodes:
        for command in cluster.commands(node):
            if command[0] != b"EVALSHA":
                continue
            n = int(command[2])
            script_keys = command[3 : 3 + n]
            assert command[3 + n :] == [b"_ts:v"]
            assert len({key_slot(k) for k in script_keys}) == 1
            assert all(_owner(cluster, k) is node for k in script_keys)
            checked += script_keys
    assert sorted(checked) == sorted(row.tobytes() for row in keys)
    assert len(ticket) == len({key_slot(row.tobytes()) for row in keys})


def test_cluster_writer_sends_each_write_to_its_keys_master_in_order() -> None:
    cluster = _Cluster([5461, 10923, REDIS_CLUSTER_HASH_SLOTS])
    writer = ClusterWriter(cluster)
    keys = codec.entity_keys_int64(np.arange(1, 300, dtype=np.int64), "user_id", "churnfs")
    positions = np.repeat(np.arange(len(keys)), 2)  # an HSET and an EXPIRE per key
    commands = [
        command
        for row in keys
        for command in (
            codec.command(b"HSET", row.tobytes(), b"f", b"1"),
            codec.command(b"EXPIRE", row.tobytes(), b"9"),
        )
    ]
    writer.send(keys, positions, commands)
    seen = []
    for node in cluster.nodes:
        sent = cluster.commands(node)
        assert sent, f"{node.name} got nothing"
        assert all(_owner(cluster, command[1]) is node for command in sent)
        seen += [(command[1], command[0]) for command in sent]
        # A key's HSET comes before its EXPIRE, and keys keep their order on each node.
        names = [command[0] for command in sent]
        assert names[0::2] == [b"HSET"] * (len(sent) // 2) and names[1::2] == [b"EXPIRE"] * (len(sent) // 2)
    assert sorted(seen) == sorted((row.tobytes(), name) for row in keys for name in (b"HSET", b"EXPIRE"))


def test_cluster_writer_refuses_a_cluster_with_uncovered_slots() -> None:
    cluster = _Cluster([5461, 10923, REDIS_CLUSTER_HASH_SLOTS])
    del cluster.nodes_manager.slots_cache[42]
    with pytest.raises(ConnectionError, match="does not cover 1 hash slots"):
        ClusterWriter(cluster)
