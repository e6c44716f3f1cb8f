"""The rich progress bar of the training stage (switched off in tests)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(show: bool) -> Progress:
    """A progress bar on stderr; ``show=False`` gives a silent one."""
    return Progress(
        TextColumn("[bold]train[/] {task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
