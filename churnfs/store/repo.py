"""The Feast store of one world: configuration from feature_store.yaml, apply and materialize.

``get_store(settings)`` reads the repository's feature_store.yaml and fills its ``${DATA_DIR}``,
``${REDIS_CONNECTION_STRING}`` and ``${REDIS_TYPE}`` from the Settings object (other ``${VAR}`` from the
environment), so a caller never touches environment variables and two worlds can be open in one
process. ``apply_repo`` registers the same objects ``feast apply`` would, with their sources
rooted in that world's ``DATA_DIR``.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, OnDemandFeatureView, RepoConfig
from feast.data_source import DataSource, PushSource
from feast.infra.offline_stores.file_source import FileSource
from pydantic import ValidationError

from churnfs.errors import MissingDataError
from churnfs.settings import Settings
from churnfs.store.embedded import online_store_override
from churnfs.store.errors import FeatureStoreConfigError, OnlineStoreUnavailableError
from churnfs.store.redis_servers import RedisPing
from churnfs.world import load_world_spec

logger = logging.getLogger(__name__)

FEATURE_STORE_YAML = "feature_store.yaml"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

FeastObject = Entity | DataSource | FeatureView | OnDemandFeatureView | FeatureService


def _expand(text: str, variables: dict[str, str]) -> str:
    """``${VAR}`` -> its value; an unknown variable stays as it is (as with Feast's expandvars)."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def load_repo_config(settings: Settings) -> RepoConfig:
    """Feast's configuration for this world (raises FeatureStoreConfigError with one clear line)."""
    repo_path = Path(settings.feast_repo_path).resolve()
    path = repo_path / FEATURE_STORE_YAML
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise FeatureStoreConfigError(f"no {FEATURE_STORE_YAML} in {repo_path} (FEAST_REPO_PATH)") from None
    variables = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir.resolve()),
        "REDIS_CONNECTION_STRING": settings.redis_connection_string,
        "REDIS_TYPE": settings.redis_type,
    }
    try:
        raw = yaml.safe_load(_expand(text, variables))
    except yaml.YAMLError as exc:
        raise FeatureStoreConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise FeatureStoreConfigError(f"{path} must be a YAML mapping of Feast settings")
    override = online_store_override(settings)
    if override is not None:
        if override.get("type") == "sqlite":
            raw["online_store"] = override
        else:
            raw["online_store"] = {**raw.get("online_store", {}), **override}
    if settings.offline_store == "spark":
        # Feast's Spark store over the same parquet sources (churnfs/store/spark_offline.py)
        from churnfs.spark import spark_conf

        raw["offline_store"] = {
            "type": "churnfs.store.spark_offline.ChurnSparkOfflineStore",
            "spark_conf": spark_conf(settings),
        }
    try:
        config = RepoConfig(**raw)
        # Feast validates the nested sections lazily: touch them now for one clear error.
        _ = config.online_store, config.offline_store, config.batch_engine, config.registry
    except (ValidationError, ValueError, ImportError) as exc:
        raise FeatureStoreConfigError(
            f"{path} is not a valid Feast configuration: {_first_line(exc)}"
        ) from None
    config.repo_path = repo_path
    return config


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        return f"{where}: {err.get('msg')}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_online_store(config: RepoConfig) -> None:
    """Raise OnlineStoreUnavailableError unless the configured Redis answers a PING (a Redis
    Cluster: every master answers and says ``cluster_state:ok``)."""
    online = config.online_store
    if "redis" not in str(getattr(online, "type", "")).lower():
        return
    cluster = getattr(online, "redis_type", "redis") == "redis_cluster"
    ping = RedisPing(online.connection_string, cluster=cluster, timeout_s=2)
    try:
        problem = ping.problem()
    finally:
        ping.close()
    if problem is not None:
        raise OnlineStoreUnavailableError(
            f"{problem}: start it or set REDIS_CONNECTION_STRING (on a laptop: `churnfs online-store up`)"
        )


def get_store(settings: Settings, check_online: bool = True) -> FeatureStore:
    """The Feast store of ``settings``' world: its registry, sources and online store."""
    config = load_repo_config(settings)
    if check_online:
        check_online_store(config)
    return FeatureStore(config=config)


def repo_modules(repo_path: Path) -> list[str]:
    """Module names of the Python files `feast apply` imports: Feast's ``get_repo_files`` list,
    from the walk that never enters an ignored folder (``churnfs.store.repo_files``)."""
    from churnfs.store.repo_files import list_repo_files

    root = repo_path.resolve()
    return sorted(".".join(p.relative_to(root).with_suffix("").parts) for p in list_repo_files(root))


def repo_objects(settings: Settings) -> list[FeastObject]:
    """The objects the feature repository declares, their file sources rooted in this world."""
    repo_path = Path(settings.feast_repo_path).resolve()
    if str(repo_path) not in sys.path:
        sys.path.insert(0, str(repo_path))
    found: list[FeastObject] = []
    for name in repo_modules(repo_path):
        module = importlib.import_module(name)
        for attr in vars(module).values():
            if isinstance(attr, FeastObject) and not any(attr is seen for seen in found):
                found.append(attr)
    objects = copy.deepcopy(found)
    offline_dir = settings.offline_store_dir.resolve()
    for obj in objects:
        for source in _file_sources(obj):
            source.file_options.uri = str(offline_dir / Path(source.path).name)
    return objects


def _file_sources(obj: object) -> list[FileSource]:
    if isinstance(obj, FileSource):
        return [obj]
    if isinstance(obj, PushSource):
        return _file_sources(obj.batch_source)
    if isinstance(obj, FeatureView):
        return _file_sources(obj.batch_source) + _file_sources(obj.stream_source)
    return []


def apply_repo(settings: Settings) -> dict[str, Any]:
    """Register the feature repository in this world's registry and set up the online store
    (what `feast apply` does); objects no longer declared are removed."""
    from feast.repo_contents import RepoContents
    from feast.repo_operations import extract_objects_for_apply_delete

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = get_store(settings)
    objects = repo_objects(settings)
    contents = RepoContents(
        projects=[],
        data_sources=[o for o in objects if isinstance(o, DataSource)],
        entities=[o for o in objects if isinstance(o, Entity)],
        feature_views=[o for o in objects if isinstance(o, FeatureView)],
        feature_services=[o for o in objects if isinstance(o, FeatureService)],
        on_demand_feature_views=[o for o in objects if isinstance(o, OnDemandFeatureView)],
        stream_feature_views=[],
        label_views=[],
        permissions=[],
    )
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(store.project, store.registry, contents)
    store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return {
        "registry": str(settings.registry_path),
        "entities": len(contents.entities),
        "feature views": len(contents.feature_views),
        "feature services": len(contents.feature_services),
        "removed": len(to_delete),
    }


def materialization_window(settings: Settings, end: datetime | None = None) -> tuple[datetime, datetime]:
    """The time range `make materialize` loads: the world's start to its end (or ``end``)."""
    spec = load_world_spec(settings.raw_dir)
    end = end or spec.end
    if end.tzinfo is None:
        raise FeatureStoreConfigError(f"materialization end {end} has no time zone: give it in UTC")
    if end <= spec.start:
        raise FeatureStoreConfigError(f"materialization end {end} is before the world starts ({spec.start})")
    return spec.start, end


def materialize(settings: Settings, end: datetime | None = None, replace: bool = False) -> dict[str, Any]:
    """Load the latest feature values up to ``end`` (default: the world's end) into the online
    store, through the batch engine of feature_store.yaml.

    With ``replace``, this project's online values are deleted first (Feast's own teardown of the
    online views). Needed after the offline store was rebuilt with other values at the same as-of
    times: like Feast, the engine keeps a stored value whose event time is not older than the new
    one, so a plain materialize would leave the old values in place (the consistency check sees it).
    """
    import redis

    start, end = materialization_window(settings, end)
    store = get_store(settings)
    views = [fv for fv in store.list_feature_views() if fv.online]
    if not views:
        raise MissingDataError(f"no feature views in {settings.registry_path}: run `make apply` first")
    for fv in views:
        path = Path(fv.batch_source.path) if isinstance(fv.batch_source, FileSource) else None
        if path is not None and not path.exists():
            raise MissingDataError(f"{fv.name}: {path} does not exist: run `make features` first")
    began = time.perf_counter()
    try:
        if replace:
            store._get_provider().teardown_infra(store.project, views, store.list_entities())  # type: ignore[attr-defined]
        store.materialize(start_date=start, end_date=end, feature_views=[fv.name for fv in views])
    except (
        redis.ConnectionError,
        redis.exceptions.ClusterError,
        redis.exceptions.RedisClusterException,
    ) as exc:
        raise OnlineStoreUnavailableError(f"lost the online store while materializing: {exc}") from None
    seconds = time.perf_counter() - began
    engine = store._get_provider().batch_engine  # type: ignore[attr-defined]
    written = dict(getattr(engine, "rows_written", {}))
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "feature views": ", ".join(fv.name for fv in views),
        "replaced": "yes: the project's online values were deleted first" if replace else "no",
        "rows written": sum(written.values()) if written else "n/a (Feast's local engine)",
        "seconds": round(seconds, 2),
    }
