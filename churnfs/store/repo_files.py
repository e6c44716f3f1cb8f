"""The Python files ``feast apply`` imports, listed without walking ignored folders.

Feast 0.67's ``feast.repo_operations.get_repo_files`` globs ``**/*.py`` under the repository root
and only then subtracts what ``.feastignore`` (plus its own defaults, ``.venv`` and ``.git``
among them) ignores, globbing each ignored folder once more to do so. From this repository's root
that walks the whole ``.venv`` five times (``**/*.py``, the ``.venv`` pattern and three ``**/...``
defaults), most of a ``feast apply``. ``list_repo_files``
returns the same list from one ``os.walk`` that never enters a folder an ignore pattern matches
(Feast would have dropped every file below it anyway).

Patterns are matched as Feast's ``Path.glob`` matches them on Python 3.11: parts split on ``/``,
``**`` for any number of folders (a final ``**`` selects folders only), ``fnmatch`` case-sensitive
for each other part, hidden names included. A pattern outside that (absolute, with ``..``) or a
platform other than POSIX gets Feast's own function. Like Feast's ``**``, the walk does not follow
symbolic links to folders; a file Feast would drop only because an ignore pattern reaches it
through such a link (or through a link inside an ignored folder) is kept here.

``install_repo_file_listing`` points Feast's ``parse_repo`` (``feast apply``, ``feast plan``) at
``list_repo_files``. The offline store's config (``churnfs.store.offline``) calls it when Feast
validates feature_store.yaml, which Feast does before it lists the repository; the registry store
would be too late (Feast opens the registry after). docs/private-apis.md lists the Feast internals
this relies on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

import feast.repo_operations as feast_repo_operations

logger = logging.getLogger(__name__)

# Feast's own function, kept before anything replaces it: the fallback and the tests' reference
# (None if an upgrade removed it; nothing is installed then).
feast_get_repo_files: Callable[[Path], list[Path]] | None = getattr(
    feast_repo_operations, "get_repo_files", None
)

# What Feast 0.67's get_repo_files ignores besides .feastignore's lines (tests/unit/test_private_apis.py
# checks that Feast still passes exactly these).
FEAST_DEFAULT_IGNORES = (
    ".git",
    ".feastignore",
    ".venv",
    "**/.ipynb_checkpoints",
    "**/.pytest_cache",
    "**/__pycache__",
)

Pattern = tuple[str, ...]


def ignore_patterns(repo_root: Path) -> list[Pattern] | None:
    """Feast's ignore patterns for ``repo_root`` split into parts as ``Path.glob`` splits them, or
    None when one is outside what ``list_repo_files`` reproduces."""
    patterns = []
    for line in [*feast_repo_operations.read_feastignore(repo_root), *FEAST_DEFAULT_IGNORES]:
        pattern = PurePosixPath(line)
        if pattern.is_absolute() or not pattern.parts or ".." in pattern.parts:
            return None
        patterns.append(pattern.parts)
    return patterns


def _matches(pattern: Pattern, parts: Pattern, is_dir: bool) -> bool:
    """Whether ``Path.glob(pattern)`` from the root selects the entry at relative ``parts``."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        if not rest:  # a final ``**`` selects the folders below, at any depth
            return is_dir
        return any(_matches(rest, parts[i:], is_dir) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _matches(rest, parts[1:], is_dir)


def list_repo_files(repo_root: Path) -> list[Path]:
    """What Feast's ``get_repo_files(repo_root)`` returns (the resolved ``*.py`` files but
    ``__init__.py`` that no ignore pattern covers, sorted), without entering ignored folders."""
    patterns = ignore_patterns(repo_root)
    if patterns is None or os.name != "posix":
        assert feast_get_repo_files is not None, "installed only over Feast's own get_repo_files"
        return list(feast_get_repo_files(repo_root))

    def ignored(parts: Pattern, is_dir: bool) -> bool:
        return any(_matches(pattern, parts, is_dir) for pattern in patterns)

    if ignored((), True):  # a pattern such as ``**`` ignores the root itself
        return []
    found: set[Path] = set()
    ignored_files: set[Path] = set()
    for folder, dirs, files in os.walk(repo_root):
        base = Path(folder).relative_to(repo_root).parts
        dirs[:] = [name for name in dirs if not ignored((*base, name), True)]
        for name in files:
            path = Path(folder, name)
            if ignored((*base, name), False):
                ignored_files.add(path.resolve())
            elif name.endswith(".py") and name != "__init__.py" and path.is_file():
                found.add(path.resolve())
    return sorted(found - ignored_files)


def feast_lists_with_get_repo_files() -> bool:
    """Whether Feast still lists the repository the way ``install_repo_file_listing`` relies on:
    ``parse_repo`` looks ``get_repo_files`` up as a module global, ``read_feastignore`` exists."""
    parse_repo = getattr(feast_repo_operations, "parse_repo", None)
    return (
        callable(feast_get_repo_files)
        and callable(getattr(feast_repo_operations, "read_feastignore", None))
        and "get_repo_files" in getattr(getattr(parse_repo, "__code__", None), "co_names", ())
    )


def install_repo_file_listing() -> None:
    """Make Feast's ``parse_repo`` list the repository with ``list_repo_files`` (idempotent). A
    replacement someone else installed is left in place; a Feast that no longer lists files this
    way keeps its own listing (slow, same result), and tests/unit/test_private_apis.py says so."""
    current = feast_repo_operations.__dict__.get("get_repo_files")
    if current is list_repo_files:
        return
    if current is not feast_get_repo_files or getattr(current, "__module__", None) != "feast.repo_operations":
        return  # not Feast's own function: someone else's replacement
    if not feast_lists_with_get_repo_files():
        logger.debug("feast: parse_repo no longer lists files with get_repo_files; kept Feast's listing")
        return
    feast_repo_operations.get_repo_files = list_repo_files
    logger.debug("feast: the repository is listed by churnfs.store.repo_files (ignored folders pruned)")
