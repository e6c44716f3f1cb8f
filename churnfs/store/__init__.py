"""The Feast feature store of a world: construction from Settings, apply, fast materialization
into Redis, the online/offline consistency check and an embedded online store for laptops.

Names are imported lazily (Feast takes seconds to import), so ``churnfs --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from churnfs.store.consistency import ConsistencyReport, Mismatch, check_consistency
    from churnfs.store.repo import (
        apply_repo,
        get_store,
        load_repo_config,
        materialization_window,
        materialize,
    )

_WHERE = {
    "ConsistencyReport": "churnfs.store.consistency",
    "Mismatch": "churnfs.store.consistency",
    "check_consistency": "churnfs.store.consistency",
    "apply_repo": "churnfs.store.repo",
    "get_store": "churnfs.store.repo",
    "load_repo_config": "churnfs.store.repo",
    "materialization_window": "churnfs.store.repo",
    "materialize": "churnfs.store.repo",
}

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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'churnfs.store' has no attribute {name!r}")
