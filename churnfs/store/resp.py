"""The bulk engine's wire: raw RESP pipelines to one Redis server, or to every master of a Redis
Cluster with each key's commands sent to the node that holds its hash slot.

The engine hands a writer pre-encoded commands (``churnfs.store.codec``) and the Redis key each
belongs to; the writer sends them without waiting and reads replies only when asked. Feast's
write rule is checked by the ``STORED_EVENT_TIMES`` script: one call per chunk of keys on a
server; on a cluster one call per hash slot in the chunk, since a script may only touch the keys
of one slot (redis-py refuses, and Redis answers CROSSSLOT, otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from churnfs.store import codec

STORED_EVENT_TIMES = """
-- The stored event times of ARGV (the views' _ts fields) in each hash of KEYS, flattened as
-- (0-based key index, 0-based field index, value) for those present: one call per chunk of keys
-- instead of one HMGET per key. Keys are first counted with EXISTS (in slices, within Lua's
-- stack), so a chunk Redis holds nothing of costs next to nothing.
local found = 0
for first = 1, #KEYS, 1000 do
  found = found + redis.call('EXISTS', unpack(KEYS, first, math.min(first + 999, #KEYS)))
end
local out = {}
if found == 0 then
  return out
end
for k = 1, #KEYS do
  local values = redis.call('HMGET', KEYS[k], unpack(ARGV))
  for f = 1, #ARGV do
    if values[f] then
      out[#out + 1] = k - 1
      out[#out + 1] = f - 1
      out[#out + 1] = values[f]
    end
  end
end
return out
"""


class RespPipe:
    """Raw RESP pipelining over one redis-py connection (its handshake: auth, db, TLS), with
    replies parsed by hiredis and read only when needed."""

    def __init__(self, connection: Any) -> None:
        import hiredis

        self.connection = connection
        self.reader = hiredis.Reader()
        self.sent = 0  # commands sent
        self.received = 0  # replies read
        self._sha: bytes | None = None

    def send(self, commands: Sequence[bytes]) -> int:
        """Send ``commands``; the index of the last one's reply."""
        if commands:
            self.connection.send_packed_command([b"".join(commands)])
            self.sent += len(commands)
        return self.sent - 1

    def reply(self, index: int) -> Any:
        """The reply of command ``index`` (replies before it are read and checked)."""
        sock = self.connection._sock
        reply = None
        while self.received <= index:
            reply = self.reader.gets()
            if reply is False:
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("Redis closed the connection during materialization")
                self.reader.feed(data)
                continue
            if isinstance(reply, Exception):
                raise RuntimeError(f"Redis refused a write: {reply}")
            self.received += 1
        return reply

    def drain(self) -> None:
        """Read (and check) the replies of every command sent so far."""
        self.reply(self.sent - 1)

    def script_sha(self) -> bytes:
        """The SHA1 of ``STORED_EVENT_TIMES``, loaded into Redis' script cache on first use."""
        if self._sha is None:
            load = self.send([codec.command(b"SCRIPT", b"LOAD", STORED_EVENT_TIMES.encode())])
            sha = self.reply(load)
            self._sha = sha if isinstance(sha, bytes) else str(sha).encode()
        return self._sha


Ticket = list[tuple[int, int, np.ndarray | None]]
"""Where a check's replies will be: (node, reply index, the chunk's key indices it covered or None
for all of them), one entry per script call."""


class ServerWriter:
    """One pipeline to one Redis server, over a connection of Feast's client's pool."""

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._connection = self._pool.get_connection()
        self._pipe = RespPipe(self._connection)

    def send_check(self, keys: np.ndarray, fields: Sequence[bytes]) -> Ticket:
        """Ask for the stored ``fields`` of every key of a chunk: one script call."""
        pipe = self._pipe
        return [(0, pipe.send([codec.evalsha_command(pipe.script_sha(), keys, fields)]), None)]

    def stored(self, ticket: Ticket) -> list[Any]:
        """The flattened (key index, field index, value) reply of ``send_check``."""
        ((_, index, _),) = ticket
        return list(self._pipe.reply(index))

    def send(self, keys: np.ndarray, positions: np.ndarray, commands: Sequence[bytes]) -> None:
        """Send ``commands``, command i writing key ``keys[positions[i]]``."""
        self._pipe.send(commands)

    def drain(self) -> None:
        self._pipe.drain()

    def close(self, failed: bool) -> None:
        """Give the connection back (closed first after a failure: replies may be left unread)."""
        if failed:
            self._connection.disconnect()
        self._pool.release(self._connection)


class ClusterWriter:
    """One pipeline per master of a Redis Cluster (redis-py's ``RedisCluster`` knows the slot map
    and holds the nodes' connection pools); each key's commands go to the master of its slot."""

    def __init__(self, client: Any) -> None:
        from redis.crc import REDIS_CLUSTER_HASH_SLOTS

        slots_cache = client.nodes_manager.slots_cache
        missing = [s for s in range(REDIS_CLUSTER_HASH_SLOTS) if not slots_cache.get(s)]
        if missing:
            raise ConnectionError(
                f"the Redis Cluster does not cover {len(missing)} hash slots (first {missing[0]}): "
                "check `redis-cli cluster info`"
            )
        masters = {slots_cache[s][0].name: slots_cache[s][0] for s in range(REDIS_CLUSTER_HASH_SLOTS)}
        self.node_names = sorted(masters)
        index = {name: i for i, name in enumerate(self.node_names)}
        self._node_of_slot = np.array(
            [index[slots_cache[s][0].name] for s in range(REDIS_CLUSTER_HASH_SLOTS)], dtype=np.int64
        )
        self._leases: list[tuple[Any, Any]] = []
        self._pipes: list[RespPipe] = []
        for name in self.node_names:
            node = masters[name]
            if node.redis_connection is None:
                client.nodes_manager.create_redis_connections([node])
            pool = node.redis_connection.connection_pool
            connection = pool.get_connection()
            self._leases.append((pool, connection))
            self._pipes.append(RespPipe(connection))
        self._recent: list[tuple[np.ndarray, np.ndarray]] = []

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """The hash slot of each key. The last two chunks' are kept: the engine checks chunk i+1
        before it writes chunk i."""
        from redis.crc import key_slot

        for seen, slots in self._recent:
            if seen is keys:
                return slots
        raw, width = keys.tobytes(), keys.shape[1]
        slots = np.fromiter(
            (key_slot(raw[i * width : (i + 1) * width]) for i in range(keys.shape[0])),
            dtype=np.int64,
            count=keys.shape[0],
        )
        self._recent = [*self._recent[-1:], (keys, slots)]
        return slots

    def send_check(self, keys: np.ndarray, fields: Sequence[bytes]) -> Ticket:
        """Ask for the stored ``fields`` of every key of a chunk: one script call per hash slot,
        sent to that slot's master."""
        slots = self._slots(keys)
        order = np.argsort(slots, kind="stable")
        bounds = np.flatnonzero(np.diff(slots[order])) + 1
        ticket: Ticket = []
        for members in np.split(order, bounds):
            if not len(members):
                continue
            node = int(self._node_of_slot[slots[members[0]]])
            pipe = self._pipes[node]
            index = pipe.send([codec.evalsha_command(pipe.script_sha(), keys[members], fields)])
            ticket.append((node, index, members))
        return ticket

    def stored(self, ticket: Ticket) -> list[Any]:
        """The replies of ``send_check`` as one flattened (key index, field index, value) list,
        key indices into the whole chunk."""
        out: list[Any] = []
        for node, index, members in ticket:
            reply = self._pipes[node].reply(index)
            if not reply:
                continue
            assert members is not None
            keys = members[np.asarray(reply[0::3], dtype=np.int64)].tolist()
            out += [v for triple in zip(keys, reply[1::3], reply[2::3], strict=True) for v in triple]
        return out

    def send(self, keys: np.ndarray, positions: np.ndarray, commands: Sequence[bytes]) -> None:
        """Send each command to the master of its key's slot (``keys[positions[i]]``), in order."""
        nodes = self._node_of_slot[self._slots(keys)[positions]]
        for node in np.unique(nodes).tolist():
            picked = np.flatnonzero(nodes == node).tolist()
            self._pipes[node].send([commands[i] for i in picked])

    def drain(self) -> None:
        for pipe in self._pipes:
            pipe.drain()

    def close(self, failed: bool) -> None:
        for pool, connection in self._leases:
            if failed:
                connection.disconnect()
            pool.release(connection)
