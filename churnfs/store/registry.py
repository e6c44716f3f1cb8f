"""Feast's file registry store, with ``feature_store.yaml``'s ``${DATA_DIR}`` defaulting like Settings.

Feast expands ``${VAR}`` in feature_store.yaml with ``os.path.expandvars``, which leaves an unset
variable as the literal text: a plain ``feast feature-views list`` with no ``DATA_DIR`` exported
would open (and create) a folder named ``${DATA_DIR}/``. The store named in the file's
``registry_store_type`` resolves what is left: ``${DATA_DIR}`` becomes Settings' default data
folder (``data``, relative to the repository), and any other unresolved variable is refused in
one line instead of becoming a path.
"""

from __future__ import annotations

import re
from pathlib import Path

from feast.infra.registry.file import FileRegistryStore
from feast.repo_config import RegistryConfig

from churnfs.store.errors import FeatureStoreConfigError

REGISTRY_STORE_TYPE = "churnfs.store.registry.ChurnFileRegistryStore"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_registry_path(path: str) -> str:
    """``path`` with an unexpanded ``${DATA_DIR}`` replaced by Settings' default; raises
    FeatureStoreConfigError naming any other variable left unexpanded."""
    from churnfs.settings import Settings

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "DATA_DIR":
            return str(Settings().data_dir)
        raise FeatureStoreConfigError(
            f"feature_store.yaml: the registry path {path!r} uses ${{{name}}}, which is not set: "
            f"export {name} or write the path out"
        )

    return _VARIABLE.sub(substitute, path)


class ChurnFileRegistryStore(FileRegistryStore):
    """Feast's ``FileRegistryStore`` over the resolved path (relative paths are taken from the
    repository root, as Feast does)."""

    def __init__(self, registry_config: RegistryConfig, repo_path: Path) -> None:
        resolved = resolve_registry_path(str(registry_config.path))
        super().__init__(registry_config.model_copy(update={"path": resolved}), Path(repo_path))
