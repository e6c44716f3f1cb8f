"""The stream path (docs/stream.md): raw events through a Redis Stream into the raw store, and the
touched users' activity features recomputed with the batch job's functions and pushed online and
offline.

``publish`` replays a world's events into the stream, ``consumer`` runs the micro-batches,
``raw_store`` appends events and quarantined entries beside the raw tables, ``status`` reports
lag, consumers and pending entries, ``commands`` is ``churnfs stream``. The micro-batch logic
itself is pure and lives in ``transformations.stream``.
"""
