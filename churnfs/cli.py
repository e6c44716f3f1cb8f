"""The ``churnfs`` command line: one subcommand per stage.

Each command builds a ``Settings`` from the environment (``DATA_DIR`` etc.), calls the stage
and prints a short summary. A ``ChurnFSError`` becomes one red line and a non-zero exit code.
Heavy imports happen inside the commands, so ``churnfs --help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from churnfs.errors import ChurnFSError
from churnfs.settings import Settings

app = typer.Typer(
    name="churnfs",
    help="Churn-prediction feature store on Feast: generate, build features, train, serve, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="DATA_DIR", help="World folder (default: data)."),
]


def _settings(data_dir: Path | None) -> Settings:
    if data_dir is None:
        return Settings()
    return Settings(data_dir=data_dir)


def _clean_errors(func: F) -> F:
    """Turn a ChurnFSError into one line on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChurnFSError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def print_summary(title: str, summary: Mapping[str, object]) -> None:
    """Print a stage's summary as a two-column table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in summary.items():
        table.add_row(str(key), str(value))
    console.print(table)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Configure logging once, at the edge."""
    from churnfs.logs import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)


@app.command()
@_clean_errors
def generate(
    users: Annotated[str, typer.Option(envvar="USERS", help="Number of users (> 0).")] = "100000",
    seed: Annotated[str, typer.Option(envvar="SEED", help="Random seed (integer).")] = "42",
    drift: Annotated[bool, typer.Option("--drift/--no-drift", help="Plant drift in the last weeks.")] = True,
    dirty_fraction: Annotated[
        float, typer.Option("--dirty-fraction", min=0.0, max=0.05, help="Share of unusable event rows.")
    ] = 0.0005,
    data_dir: DataDirOption = None,
) -> None:
    """Generate the synthetic raw world under DATA_DIR/raw/."""
    from datagen import generate_world, parse_positive_int

    settings = _settings(data_dir)
    summary = generate_world(
        settings,
        users=parse_positive_int("USERS", users),
        seed=parse_positive_int("SEED", seed, allow_zero=True),
        drift=drift,
        dirty_fraction=dirty_fraction,
    )
    print_summary("raw world", summary)


@app.command()
@_clean_errors
def features(
    data_dir: DataDirOption = None,
) -> None:
    """Build the offline store (profile, activity, review and label groups) from the raw world."""
    from transformations.job import build_features

    summary = build_features(_settings(data_dir))
    print_summary("offline store", summary)


@app.command()
@_clean_errors
def monitor(
    reference: Annotated[
        str, typer.Option(help="Reference window: training, latest, drift or YYYY-MM-DD..YYYY-MM-DD.")
    ] = "training",
    current: Annotated[str, typer.Option(help="Current window (same choices).")] = "latest",
    data_dir: DataDirOption = None,
) -> None:
    """Compare the training period with the latest snapshots and the prediction log; exit 3 on drift."""
    from monitoring import render_summary_table, run_monitoring

    result = run_monitoring(_settings(data_dir), reference=reference, current=current)
    console.print(render_summary_table(result.summary))
    raise typer.Exit(code=result.exit_code)


@app.command()
@_clean_errors
def serve(data_dir: DataDirOption = None) -> None:
    """Serve features and predictions over HTTP (uvicorn on HOST:PORT)."""
    import uvicorn

    from serving.app import create_app

    settings = _settings(data_dir)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False
    )


from churnfs.store.commands import register as register_store_commands  # noqa: E402

register_store_commands(app, _clean_errors)
