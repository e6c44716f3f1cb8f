"""The ``churnfs`` command line: one subcommand per stage.

Each command builds a ``Settings`` from the environment (``DATA_DIR`` etc.), calls the stage
and prints a short summary. A ``ChurnFSError`` becomes one red line and a non-zero exit code.
Heavy imports happen inside the commands, so ``churnfs --help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from churnfs.cli_common import DataDirOption, console, print_summary
from churnfs.cli_common import settings_for as _settings
from churnfs.errors import ChurnFSError

app = typer.Typer(
    name="churnfs",
    help="Churn-prediction feature store on Feast: generate, build features, train, serve, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


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
    end: Annotated[
        str | None,
        typer.Option(
            "--end",
            help="The world's last day, YYYY-MM-DD (default 2025-07-06). Worlds that differ only in "
            "their end agree row for row before the earlier one.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Generate the synthetic raw world under DATA_DIR/raw/."""
    from datagen import generate_world, parse_positive_int
    from datagen.generator import parse_end_day

    settings = _settings(data_dir)
    summary = generate_world(
        settings,
        users=parse_positive_int("USERS", users),
        seed=parse_positive_int("SEED", seed, allow_zero=True),
        drift=drift,
        dirty_fraction=dirty_fraction,
        end=parse_end_day(end),
    )
    print_summary("raw world", summary)


@app.command()
@_clean_errors
def features(
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            envvar="FEATURE_ENGINE",
            help="duckdb (this process, the default) or spark (buckets of users on SPARK_MASTER).",
        ),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(help="Comma-separated: profile,activity,review,labels (default all)."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Build the offline store (profile, activity, review and label groups) from the raw world."""
    from transformations.job import build_features

    selected = [g.strip() for g in groups.split(",") if g.strip()] if groups else None
    summary = build_features(_settings(data_dir), groups=selected, engine=engine)
    print_summary("offline store", summary)


@app.command()
@_clean_errors
def train(
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated: logistic_regression,lightgbm,xgboost,catboost (default all)."),
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help="Make the new model churn-model@champion even if it scores worse than the current "
            "champion on the test period.",
        ),
    ] = False,
    max_rows_per_cutoff: Annotated[
        int | None,
        typer.Option(
            "--max-rows-per-cutoff",
            min=0,
            help="Label rows kept per training or validation cutoff: a stratified, seeded sample "
            "above it (default TRAIN_MAX_ROWS_PER_CUTOFF, 100,000; 0: every row). The test period "
            "is scored whole.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Train the churn models on point-in-time features and register the chosen one (the simplest
    within one standard error of the best validation PR-AUC): as churn-model@champion if it is not
    worse than the champion on the test period, else as @challenger."""
    from training.train import summary_rows, train_models

    settings = _settings(data_dir)
    if max_rows_per_cutoff is not None:
        settings = settings.model_copy(update={"train_max_rows_per_cutoff": max_rows_per_cutoff})
    summary = train_models(settings, models=models.split(",") if models else None, promote=promote)
    print_summary("training", summary_rows(summary))
    console.print(
        f"{summary['model uri']} is version {summary['registered version']}: {summary['gate']}",
        highlight=False,
        soft_wrap=True,
    )


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


@app.command()
@_clean_errors
def smoke(
    users: Annotated[int, typer.Option(min=1, max=100, help="How many users to score.")] = 5,
    data_dir: DataDirOption = None,
) -> None:
    """Start the service on a free port, score a few users over HTTP, stop it (the demo's step)."""
    from serving.smoke import run_smoke

    result = run_smoke(_settings(data_dir), users=users)
    model = result["health"].get("model", {})
    console.print(f"served at {result['url']}: model {model.get('name')} v{model.get('version')}")
    table = Table(title="predictions over HTTP", title_justify="left")
    for column in ("user_id", "churn_probability", "risk_band", "source", "top feature"):
        table.add_column(column)
    for p in result["predictions"]:
        top = p["top_features"][0]["feature"] if p["top_features"] else ""
        table.add_row(str(p["user_id"]), f"{p['churn_probability']:.3f}", p["risk_band"], p["source"], top)
    console.print(table)
    console.print(f"batch /predict scored {len(result['batch']['predictions'])} users in one call")


@app.command()
@_clean_errors
def summary(
    started_at: Annotated[
        float | None, typer.Option(help="Unix time the run began (prints the wall time since).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """What the world folder holds: raw tables, offline store, registry, model, log, drift report."""
    from churnfs.summary import world_summary

    print_summary("churnfs world", world_summary(_settings(data_dir), started_at))


from churnfs.store.commands import register as register_store_commands  # noqa: E402

register_store_commands(app, _clean_errors)

from churnfs.stream.commands import register as register_stream_commands  # noqa: E402

register_stream_commands(app, _clean_errors)
