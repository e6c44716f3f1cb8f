"""The Feast feature store of a world: construction from Settings, apply, fast materialization
into Redis, the online/offline consistency check and an embedded online store for laptops."""

from churnfs.store.consistency import ConsistencyReport, Mismatch, check_consistency
from churnfs.store.repo import (
    apply_repo,
    get_store,
    load_repo_config,
    materialization_window,
    materialize,
)

__all__ = [
    "ConsistencyReport",
    "Mismatch",
    "apply_repo",
    "check_consistency",
    "get_store",
    "load_repo_config",
    "materialization_window",
    "materialize",
]
