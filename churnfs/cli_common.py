"""What every ``churnfs`` command shares: the ``--data-dir`` option, the settings it builds and
the summary table (used by ``churnfs.cli`` and ``churnfs.store.commands``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from churnfs.settings import Settings

console = Console()

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="DATA_DIR", help="World folder (default: data)."),
]


def settings_for(data_dir: Path | None) -> Settings:
    """Settings from the environment, with ``--data-dir`` (when given) overriding DATA_DIR."""
    return Settings() if data_dir is None else Settings(data_dir=data_dir)


def print_summary(title: str, summary: Mapping[str, object]) -> None:
    """Print a stage's summary as a two-column table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in summary.items():
        table.add_row(str(key), str(value))
    console.print(table)
