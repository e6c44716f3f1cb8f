"""The service's state: its connections to the Feast registry and online store, the champion
model, the offline fallback and the prediction log, each allowed to be missing.

A missing piece does not stop the app: ``/health`` says what is missing and what to run, the
routes that need it answer 503, and the piece is looked for again (at most every
``RECONNECT_EVERY_S``), so `make apply` or `make train` after start-up needs no restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from churnfs.errors import ChurnFSError, ServiceUnavailableError
from churnfs.settings import Settings
from serving.batching import MAX_BATCH, PredictionBatcher
from serving.features import FeatureLookup, FeatureVector
from serving.metrics import ServiceMetrics
from serving.model import (
    DEFAULT_FEATURE_SERVICE,
    MODEL_ALIAS,
    MODEL_NAME,
    ChampionModel,
    load_champion,
    risk_band,
    top_features,
)
from serving.offline import OfflineSnapshots
from serving.online import (
    FeatureLayout,
    OnlineFeatures,
    RedisProbe,
    describe_redis,
    is_cluster,
    tune_feast_redis_client,
)
from serving.prediction_log import PredictionLog, prediction_record

logger = logging.getLogger(__name__)

RECONNECT_EVERY_S = 5.0


def limit_native_threads() -> None:
    """One OpenMP / BLAS thread per call in the serving process.

    Scoring one user is tiny work: XGBoost and LightGBM would otherwise spin up a thread team per
    call (measured on 2 cores: 41 ms of CPU per explained XGBoost prediction, 16 ms with one
    thread). Concurrency comes from concurrent requests (and workers), not from threads inside
    one prediction. Applied to the libraries loaded with the model."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


class ServingState:
    """Everything the routes need, created once per app."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.prediction_log = PredictionLog(settings.prediction_log_dir)
        self.store: Any = None
        self.feature_service: Any = None
        self.layout: FeatureLayout | None = None
        self.online: OnlineFeatures | None = None
        self.offline: OfflineSnapshots | None = None
        self.lookup: FeatureLookup | None = None
        self.refresh_writer: Any = None  # serving.refresh.online_writer, made at the first refresh
        self.model: ChampionModel | None = None
        self.problems: dict[str, str] = {}
        self.last_refresh: datetime | None = None
        self._stream_client: Any = None  # a short-timeout client for the stream group's lag
        self._next_attempt: dict[str, float] = {}
        self._lock = threading.RLock()
        self.batcher = PredictionBatcher(
            self.predict_requests,
            max_batch=MAX_BATCH if settings.predict_micro_batch else 1,
            on_batch=metrics.predict_batch_size.observe,
        )

    # --- connecting -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to everything once (at start-up); failures are recorded, never raised."""
        with self._lock:
            self._connect_model()
            self._connect_store()
            self._connect_offline()
        for component, problem in self.problems.items():
            logger.warning("%s not ready: %s", component, problem)

    def _due(self, component: str) -> bool:
        now = time.monotonic()
        if now < self._next_attempt.get(component, 0.0):
            return False
        self._next_attempt[component] = now + RECONNECT_EVERY_S
        return True

    def _connect_model(self) -> None:
        try:
            self.model = load_champion(self.settings)
        except ChurnFSError as exc:
            self.problems["model"] = str(exc)
            return
        except Exception as exc:  # an unloadable artifact must not stop the app
            logger.exception("loading the champion model failed")
            self.problems["model"] = f"cannot load `{MODEL_NAME}@{MODEL_ALIAS}`: {exc}"
            return
        self.problems.pop("model", None)
        limit_native_threads()
        self.metrics.set_model(
            self.model.name, self.model.version, self.model.alias, self.model.feature_service
        )

    def _wanted_feature_service(self) -> str:
        return self.model.feature_service if self.model is not None else DEFAULT_FEATURE_SERVICE

    def _connect_store(self) -> None:
        name = self._wanted_feature_service()
        try:
            from churnfs.store import get_store

            # Redis may be down at start-up: the offline fallback answers meanwhile.
            store = self.store or get_store(self.settings, check_online=False)
            store.refresh_registry()
            service = store.get_feature_service(name, allow_cache=True)
        except ChurnFSError as exc:
            self.problems["registry"] = str(exc)
            return
        except Exception as exc:
            self.problems["registry"] = (
                f"feature service {name} not found in the Feast registry ({type(exc).__name__}: {exc}): "
                "run `make apply` (and `make materialize`)"
            )
            return
        self.store, self.feature_service = store, service
        self.layout = FeatureLayout.from_feature_service(service)
        self.problems.pop("registry", None)
        probe = None
        if tune_feast_redis_client(store):
            config = store.config.online_store
            probe = RedisProbe(config.connection_string, cluster=is_cluster(config))
        self.online = OnlineFeatures(store, service, self.layout, probe)
        ok, detail, _ = self.online.check()
        self.metrics.online_store_up.set(1 if ok else 0)
        if not ok:
            logger.warning("%s", detail)
        self.lookup = FeatureLookup(self.layout, self.online, self.offline)

    def _connect_offline(self) -> None:
        if self.layout is None:
            self.problems["offline"] = "offline fallback waits for the Feast registry"
            return
        try:
            self.offline = OfflineSnapshots.load(self.settings.offline_store_dir, self.layout.views)
        except ChurnFSError as exc:
            self.problems["offline"] = str(exc)
            return
        except Exception as exc:
            logger.exception("loading the offline fallback failed")
            self.problems["offline"] = (
                f"cannot read the offline store under {self.settings.offline_store_dir}: {exc}"
            )
            return
        self.problems.pop("offline", None)
        self.lookup = FeatureLookup(self.layout, self.online, self.offline)

    def _retry_missing(self) -> None:
        with self._lock:
            if self.model is None and self._due("model"):
                self._connect_model()
            wanted = self._wanted_feature_service()
            stale = self.layout is not None and self.layout.feature_service != wanted
            if (self.layout is None or stale) and self._due("registry"):
                self._connect_store()
                if stale:
                    self.offline = None
            if self.layout is not None and self.offline is None and self._due("offline"):
                self._connect_offline()

    def ensure_features(self) -> FeatureLookup:
        """The feature lookup, or ServiceUnavailableError saying what to run."""
        if self.lookup is None:
            self._retry_missing()
        if self.lookup is None:
            raise ServiceUnavailableError(self.problems.get("registry", "the feature store is not ready"))
        return self.lookup

    def ensure_model(self) -> ChampionModel:
        """The champion model, or ServiceUnavailableError saying what to run."""
        if self.model is None:
            self._retry_missing()
        if self.model is None:
            raise ServiceUnavailableError(self.problems.get("model", "no model loaded: run `make train`"))
        return self.model

    def close(self) -> None:
        self.batcher.close()
        if self.online is not None and self.online.probe is not None:
            self.online.probe.close()

    # --- features and predictions ------------------------------------------------------------

    def features(self, user_ids: Sequence[int]) -> list[FeatureVector | None]:
        """Feature vectors (None for unknown users), counting fallbacks."""
        vectors = self.ensure_features().get(user_ids)
        for vector in vectors:
            if vector is not None and vector.fallback_reason is not None:
                self.metrics.fallbacks.labels(reason=vector.fallback_reason).inc()
        if self.online is not None:
            self.metrics.online_store_up.set(1 if self.online.is_up else 0)
        return vectors

    def predict(self, user_ids: Sequence[int], request_id: str) -> tuple[list[dict[str, Any]], list[int]]:
        """Score users: (predictions of the known ones in request order, unknown ids). Every
        prediction is appended to the prediction log."""
        results = self.predict_requests(user_ids, [request_id] * len(user_ids))
        predictions = [r for r in results if r is not None]
        unknown = [u for u, r in zip(user_ids, results, strict=True) if r is None]
        return predictions, unknown

    async def predict_one(self, user_id: int, request_id: str) -> dict[str, Any] | None:
        """Score one user (None when unknown) in the next micro-batch (``serving.batching``)."""
        result: dict[str, Any] | None = await self.batcher.submit(user_id, request_id)
        return result

    def predict_requests(
        self, user_ids: Sequence[int], request_ids: Sequence[str]
    ) -> list[dict[str, Any] | None]:
        """Score users, each on behalf of its own request: one prediction per position (None for
        an unknown user), with one feature read, one model call and one log write for all."""
        model = self.ensure_model()
        vectors = self.features(user_ids)
        known = [(i, v) for i, v in enumerate(vectors) if v is not None]
        results: list[dict[str, Any] | None] = [None] * len(user_ids)
        if not known:
            return results
        scores = model.score([v.values for _, v in known])
        logged_at = datetime.now(UTC)
        records = []
        for (i, vector), score in zip(known, scores, strict=True):
            band = risk_band(score.churn_probability)
            results[i] = {
                "request_id": request_ids[i],
                "user_id": vector.user_id,
                "churn_probability": score.churn_probability,
                "risk_band": band,
                "model_name": model.name,
                "model_version": model.version,
                "model_alias": model.alias,
                "feature_service": model.feature_service,
                "source": vector.source,
                "fallback_reason": vector.fallback_reason,
                "top_features": top_features(score.contributions, vector.values),
            }
            records.append(
                prediction_record(
                    logged_at=logged_at,
                    request_id=request_ids[i],
                    user_id=vector.user_id,
                    model_name=model.name,
                    model_version=model.version,
                    feature_service=model.feature_service,
                    source=vector.source,
                    churn_probability=score.churn_probability,
                    risk_band=band,
                    features=vector.values,
                )
            )
            self.metrics.predictions.labels(source=vector.source, risk_band=band).inc()
        self.prediction_log.append(records)
        return results

    # --- health -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health report; ``status`` is ok, degraded or unavailable."""
        self._retry_missing()
        now = datetime.now(UTC)
        reasons: list[str] = []

        online: dict[str, Any] = {
            "ok": False,
            "detail": "no feature store",
            "type": "unknown",
            "address": None,
            "latency_ms": None,
        }
        if self.store is not None:
            config = self.store.config.online_store
            online["type"] = getattr(config, "type", "unknown")
            if "redis" in str(online["type"]).lower():
                online["address"] = describe_redis(config.connection_string)
        if self.online is not None:
            ok, detail, latency = self.online.check()
            online.update(ok=ok, detail=detail, latency_ms=latency)
            self.metrics.online_store_up.set(1 if ok else 0)
        if not online["ok"]:
            reasons.append(f"online store: {online['detail']}")

        registry = {
            "ok": self.layout is not None,
            "detail": f"feature service {self.layout.feature_service} found"
            if self.layout
            else self.problems.get("registry", "not connected"),
            "feature_service": self.layout.feature_service if self.layout else None,
            "feature_views": list(self.layout.views) if self.layout else [],
        }
        if not registry["ok"]:
            reasons.append(f"registry: {registry['detail']}")

        model = self.model
        model_status = {
            "ok": model is not None,
            "detail": "loaded" if model else self.problems.get("model", "not loaded"),
            "name": MODEL_NAME,
            "alias": MODEL_ALIAS,
            "version": model.version if model else None,
            "run_id": model.run_id if model else None,
            "feature_service": model.feature_service if model else None,
            "feature_service_version": model.feature_service_version if model else None,
        }
        if model is None:
            reasons.append(f"model: {model_status['detail']}")

        fallback = {
            "ok": self.offline is not None,
            "detail": "latest snapshots loaded"
            if self.offline
            else self.problems.get("offline", "not loaded"),
            "users": self.offline.users if self.offline else 0,
        }
        if not fallback["ok"]:
            reasons.append(f"offline fallback: {fallback['detail']}")

        freshness = self._freshness(now)
        ends = [f["materialized_until"] for f in freshness if f["materialized_until"] is not None]
        newest = max(ends) if ends else None

        if not registry["ok"] or model is None or not (online["ok"] or fallback["ok"]):
            status = "unavailable"
        elif online["ok"] and fallback["ok"]:
            status = "ok"
        else:
            status = "degraded"
        return {
            "status": status,
            "reasons": reasons,
            "online_store": online,
            "registry": registry,
            "model": model_status,
            "offline_fallback": fallback,
            "freshness": freshness,
            "newest_materialized": newest,
            "newest_age_seconds": (now - newest).total_seconds() if newest else None,
            "last_refresh": self.last_refresh,
            "stream": self._stream_lag() if online["ok"] else None,
        }

    def _stream_lag(self) -> dict[str, Any] | None:
        """The event stream's consumer group lag (docs/stream.md), or None when there is no group
        (or it cannot be read: the stream is optional, so it never changes the status)."""
        if self.settings.redis_type != "redis":
            return None
        from churnfs.store.redis_servers import redis_client
        from churnfs.stream.location import stream_settings
        from churnfs.stream.status import group_lag

        try:
            if self._stream_client is None:
                # the stream lives beside this world's online store (a private server under DATA_DIR)
                where = stream_settings(self.settings).redis_connection_string
                self._stream_client = redis_client(where, timeout_s=0.5)
            return group_lag(self._stream_client, self.settings)
        except Exception as exc:  # redis errors, a key of another type
            logger.debug("no stream lag for /health: %s", exc)
            return None

    def _freshness(self, now: datetime) -> list[dict[str, Any]]:
        if self.store is None or self.layout is None:
            return []
        out = []
        for view in self.layout.views:
            try:
                fv = self.store.get_feature_view(view, allow_registry_cache=True)
            except Exception:  # a view removed since start-up: report it as unknown
                out.append(
                    {
                        "feature_view": view,
                        "materialized_until": None,
                        "age_seconds": None,
                        "ttl_seconds": None,
                    }
                )
                continue
            ends = [end for _, end in fv.materialization_intervals]
            end = max(ends).astimezone(UTC) if ends else None
            out.append(
                {
                    "feature_view": view,
                    "materialized_until": end,
                    "age_seconds": (now - end).total_seconds() if end else None,
                    "ttl_seconds": fv.ttl.total_seconds() if fv.ttl else None,
                }
            )
        return out
