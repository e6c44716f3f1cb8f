"""The service's own Prometheus metrics, beside the per-route request counts and latencies that
prometheus-fastapi-instrumentator records. Each app gets its own registry, so two apps (tests)
never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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

    def set_model(self, name: str, version: str, alias: str, feature_service: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version, alias=alias, feature_service=feature_service).set(
            1
        )
