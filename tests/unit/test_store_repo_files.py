"""``list_repo_files``: the files ``feast apply`` imports, the same list as Feast's own
``get_repo_files``, found without entering ``.venv/``, ``data/`` or any other ignored folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import feast.repo_operations as feast_repo_operations
import pytest
from feast.repo_config import load_repo_config

from churnfs.settings import PROJECT_ROOT
from churnfs.store import repo_files
from churnfs.store.repo_files import feast_get_repo_files, install_repo_file_listing, list_repo_files

FILES = [
    "top.py",
    "setup_helper.py",
    "feature_repo/__init__.py",
    "feature_repo/entities.py",
    "feature_repo/views.py",
    "feature_repo/sub/b.py",
    "feature_repo/sub/tests/t.py",
    "feature_repo/__pycache__/entities.cpython-311.py",
    "feature_repo/.ipynb_checkpoints/views-checkpoint.py",
    "code/c.py",
    "code/deep/tests/helper.py",
    "notes/d.py",
    "build/lib/e.py",
    "buildtools/f.py",
    ".ci/tool.py",
    ".pytest_cache/v/x.py",
    "__pycache__/top.cpython-311.py",
    ".venv/lib/python3.11/site-packages/pkg/__init__.py",
    ".venv/lib/python3.11/site-packages/pkg/module.py",
    ".venv/bin/activate_this.py",
    ".git/hooks/hook.py",
    "data/offline_store/loader.py",
    "data/raw/README.md",
]

# The repository's own .feastignore, and patterns of every shape Path.glob gives a meaning to.
FEASTIGNORES = {
    "repository": (PROJECT_ROOT / ".feastignore").read_text(),
    "none": None,
    "folders": "# comment\ncode/\nnotes\ndata/\n",
    "wildcards": "data\n*.py\nb*/\n**/tests\n",
    "recursive below": "data/\nfeature_repo/sub/**\ncode/**/helper.py\n",
    "one file": "data\nfeature_repo/sub/b.py  # trailing comment\n[ns]otes/\n",
    "everything": "**\n",
    "fallback to Feast": "data\nfeature_repo/../notes\n",
}


def _tree(root: Path, feastignore: str | None) -> Path:
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "shared").mkdir()
    (root / "shared" / "real.py").write_text("")
    (root / "alias.py").symlink_to(root / "shared" / "real.py")  # Feast compares resolved paths
    (root / "feature_repo" / "linked.py").symlink_to(root / "shared" / "real.py")
    (root / "feature_repo" / "broken.py").symlink_to(root / "nowhere.py")
    (root / "feature_repo" / "venv_link").symlink_to(root / ".venv", target_is_directory=True)
    if feastignore is not None:
        (root / ".feastignore").write_text(feastignore)
    return root


@pytest.fixture(autouse=True)
def _feasts_own_listing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with Feast's function in place and leaves it as it found it."""
    monkeypatch.setattr(feast_repo_operations, "get_repo_files", feast_get_repo_files)
    yield


@pytest.mark.parametrize("feastignore", FEASTIGNORES.values(), ids=FEASTIGNORES.keys())
def test_listing_equals_feasts_own_without_the_ignored_folders(
    tmp_path: Path, feastignore: str | None
) -> None:
    root = _tree(tmp_path / "repo", feastignore)
    assert feast_get_repo_files is not None
    feasts = feast_get_repo_files(root)
    pruned = [root / ".venv", root / "data", root / ".git"] if feastignore else [root / ".venv"]
    # Feast's result restricted to paths outside the pruned folders: it never had any inside them.
    expected = [p for p in feasts if not any(p.is_relative_to(folder.resolve()) for folder in pruned)]
    assert list_repo_files(root) == expected == feasts


def test_listing_keeps_definitions_and_drops_ignored_init_cache_and_broken_files(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo", FEASTIGNORES["folders"])
    found = [p.relative_to(root.resolve()).as_posix() for p in list_repo_files(root)]
    assert found == [
        ".ci/tool.py",  # hidden folders count unless ignored, as in Feast
        "build/lib/e.py",
        "buildtools/f.py",
        "feature_repo/entities.py",
        "feature_repo/sub/b.py",
        "feature_repo/sub/tests/t.py",
        "feature_repo/views.py",
        "setup_helper.py",
        "shared/real.py",  # also what alias.py and feature_repo/linked.py resolve to
        "top.py",
    ]


def test_a_link_inside_an_ignored_folder_does_not_hide_its_target(tmp_path: Path) -> None:
    """The one difference, by design: Feast also drops a file that a symbolic link inside an
    ignored folder points to (it compares resolved paths); the pruned walk never sees the link."""
    root = _tree(tmp_path / "repo", "data/\nfeature_repo/\n")
    assert feast_get_repo_files is not None
    real = (root / "shared" / "real.py").resolve()
    assert set(list_repo_files(root)) - set(feast_get_repo_files(root)) == {real}


def test_listing_never_enters_an_ignored_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "repo", FEASTIGNORES["folders"])
    scanned: list[Path] = []
    scandir = os.scandir

    def spy(path: str) -> Iterator[os.DirEntry[str]]:
        scanned.append(Path(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    list_repo_files(root)
    assert root in scanned and root / "feature_repo" / "sub" in scanned
    skipped = [".venv", ".git", ".pytest_cache", "__pycache__", "code", "notes", "data"]
    skipped += ["feature_repo/__pycache__", "feature_repo/.ipynb_checkpoints", "feature_repo/venv_link"]
    for folder in skipped:
        assert not any(p.is_relative_to(root / folder) for p in scanned), folder


def test_feature_store_yaml_points_feast_apply_at_the_pruned_listing() -> None:
    # What `feast apply` does first: validate feature_store.yaml (before it lists the files).
    load_repo_config(PROJECT_ROOT, PROJECT_ROOT / "feature_store.yaml")
    assert feast_repo_operations.get_repo_files is list_repo_files, (
        "building feature_store.yaml's config no longer installs churnfs.store.repo_files: "
        "`feast apply` walks .venv/ again (churnfs/store/offline.py)"
    )
    assert [p.relative_to(PROJECT_ROOT).as_posix() for p in list_repo_files(PROJECT_ROOT)] == [
        "feature_repo/data_sources.py",
        "feature_repo/entities.py",
        "feature_repo/feature_services.py",
        "feature_repo/feature_views.py",
    ]


def test_installing_twice_or_over_another_replacement_changes_nothing() -> None:
    install_repo_file_listing()
    install_repo_file_listing()
    assert feast_repo_operations.get_repo_files is list_repo_files

    def someone_elses(repo_root: Path) -> list[Path]:
        return []

    feast_repo_operations.get_repo_files = someone_elses
    install_repo_file_listing()
    assert feast_repo_operations.get_repo_files is someone_elses


def test_a_replacement_made_before_churnfs_was_imported_is_left_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def someone_elses(repo_root: Path) -> list[Path]:
        return []

    # What churnfs.store.repo_files would have kept as "Feast's own" had it been imported after.
    monkeypatch.setattr(repo_files, "feast_get_repo_files", someone_elses)
    monkeypatch.setattr(feast_repo_operations, "get_repo_files", someone_elses)
    install_repo_file_listing()
    assert feast_repo_operations.get_repo_files is someone_elses
