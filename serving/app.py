"""The FastAPI app: ``create_app(settings)`` wires the routers, the error handlers, the metrics
and a lifespan that connects to Feast, the MLflow registry and the offline store.

Run it with ``churnfs serve`` (uvicorn on ``settings.host``/``settings.port``); pass
``log_config=None`` to uvicorn so its own lines go through the JSON logging set up here.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator

import churnfs
from churnfs.settings import Settings, get_settings
from serving.api.errors import install_error_handlers
from serving.api.main import api_router
from serving.metrics import ServiceMetrics
from serving.middleware import RequestContextMiddleware
from serving.service import ServingState

logger = logging.getLogger(__name__)

DESCRIPTION = """
Churn features and predictions over the churnfs Feast repository.

* **features** come from Redis through Feast (`churn_model_v1`); when Redis has nothing for a
  user or cannot be reached, from the offline store's latest snapshot (`source: offline`).
* **predict** scores with the `churn-model@champion` model of the MLflow registry and logs
  every prediction under `DATA_DIR/predictions/` for monitoring.
* **refresh** (needs `X-API-Key`) recomputes a user's features as of the refresh clock (the
  world's end by default) and writes them online and to the offline store Feast reads.

Every error is JSON: `{"error", "detail", "request_id"}`.
"""

TAGS = [
    {"name": "health", "description": "Readiness and feature freshness."},
    {"name": "features", "description": "Online feature vectors with offline fallback."},
    {"name": "predict", "description": "Churn scores from the registered champion model."},
    {"name": "refresh", "description": "Recompute one user's features from the raw data (API key)."},
    {"name": "metrics", "description": "Prometheus metrics."},
]


METRICS_EXAMPLE = (
    "# TYPE churnfs_feature_fallbacks_total counter\n"
    'churnfs_feature_fallbacks_total{reason="online_store_unreachable"} 3.0\n'
)


def _expose_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """``GET /metrics`` from this app's registry.

    Not the instrumentator's own ``expose``: importing Feast sets ``PROMETHEUS_MULTIPROC_DIR``
    as a side effect, which makes that endpoint read (empty) multiprocess files instead of the
    in-process metrics recorded here."""

    @app.get(
        "/metrics",
        tags=["metrics"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": METRICS_EXAMPLE}}}},
    )
    def metrics() -> Response:
        """Request counts and latencies per route, fallbacks, predictions, refreshes, the online
        store's state and the model version, in Prometheus' text format."""
        return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def freeze_startup_objects() -> None:
    """Move everything allocated so far (Feast, MLflow, the model: about 500,000 objects) out of
    the cyclic garbage collector's reach (``gc.freeze``).

    A full collection walks every tracked object: 260 ms once the model is loaded, a pause every
    request in flight would wait for. Frozen, it takes well under a millisecond; what start-up
    allocated lives as long as the process anyway."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    """Build the app. Nothing connects until start-up (the lifespan), and nothing there is
    fatal: a missing registry, model or Redis shows in ``/health`` and as 503s."""
    settings = settings or get_settings()
    registry = CollectorRegistry()
    state = ServingState(settings, ServiceMetrics(registry))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            from churnfs.logs import configure_logging

            configure_logging(logging.INFO, json_logs=True)
        await run_in_threadpool(state.connect)
        freeze_startup_objects()
        logger.info("serving ready", extra={"problems": state.problems or None})
        try:
            yield
        finally:
            # close() joins the batching worker, whose last answers are settled on this loop.
            await run_in_threadpool(state.close)

    app = FastAPI(
        title="churnfs serving",
        version=churnfs.__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.serving = state
    install_error_handlers(app)
    app.include_router(api_router)
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(app)
    _expose_metrics(app, registry)
    # Added last, so it wraps everything else (instrumentator included).
    app.add_middleware(RequestContextMiddleware)
    return app
