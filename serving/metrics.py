"""The service's own Prometheus metrics, beside the per-route request counts and latencies that
prometheus-fastapi-instrumentator records. Each app gets its own registry, so two apps (tests)
never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Fallbacks, predictions, refreshes, the online store's state and the model version."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.fallbacks = Counter(
            "churnfs_feature_fallbacks_total",
            "Feature vectors served from the offline store instead of Redis, by reason.",
            ["reason"],
            registry=registry,
        )
        self.predictions = Counter(
            "churnfs_predictions_total",
            "Users scored, by feature source and risk band.",
            ["source", "risk_band"],
            registry=registry,
        )
        self.predict_batch_size = Histogram(
            "churnfs_predict_batch_size",
            "One-user predictions scored together in one micro-batch (serving.batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.refreshes = Counter(
            "churnfs_refreshes_total", "Single-user refreshes, by outcome.", ["outcome"], registry=registry
        )
        self.online_store_up = Gauge(
            "churnfs_online_store_up", "1 when the online store (Redis) answers, else 0.", registry=registry
        )
        self.model_info = Gauge(
            "churnfs_model_info",
            "The model being served (value 1), labelled with its registry name, version and alias.",
            ["name", "version", "alias", "feature_service"],
            registry=registry,
        )
        self._model_labels: tuple[str, str, str, str] | None = None

    def set_model(self, name: str, version: str, alias: str, feature_service: str) -> None:
        """Mark the served model (1) and any model served before it in this process (0)."""
        # Not Gauge.clear(): prometheus_client runs in multiprocess mode when Feast was imported
        # first (Feast sets PROMETHEUS_MULTIPROC_DIR), and clear() is not supported there.
        labels = (name, version, alias, feature_service)
        if self._model_labels is not None and self._model_labels != labels:
            self.model_info.labels(*self._model_labels).set(0)
        self.model_info.labels(*labels).set(1)
        self._model_labels = labels
