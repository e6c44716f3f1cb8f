"""The stream consumer's Prometheus metrics (``churnfs stream consume --metrics-port``): the
group's lag, freshness from ``XADD`` to the online write, and entries by outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StreamMetrics:
    """Lag, freshness and counts of one consumer, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.lag = Gauge(
            "churnfs_stream_lag",
            "Entries of the stream the consumer group has not acknowledged (not yet delivered + pending).",
            registry=self.registry,
        )
        self.freshness = Histogram(
            "churnfs_stream_freshness_seconds",
            "Seconds from an event's XADD to its user's online write.",
            buckets=FRESHNESS_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "churnfs_stream_events_total",
            "Stream entries by outcome: processed (new in the raw store), repeat (already stored), "
            "quarantined (malformed or failing validation).",
            ["outcome"],
            registry=self.registry,
        )
        self.batches = Counter(
            "churnfs_stream_batches_total",
            "Micro-batches by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )
