"""The feature store's CLI commands, registered on the ``churnfs`` app by ``register``.

``churnfs apply``, ``churnfs materialize``, ``churnfs check-consistency``,
``churnfs materialize-window`` (prints START END for ``feast materialize``) and
``churnfs online-store up [--cluster N]|down`` (the embedded store for a laptop demo, or a
private Redis Cluster). Every command reads
``Settings`` from the environment (``--data-dir`` overrides DATA_DIR); a ChurnFSError becomes
one line on stderr and a non-zero exit (the app's ``clean_errors`` wrapper).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer

from churnfs.cli_common import DataDirOption as DataDir
from churnfs.cli_common import print_summary as _summary
from churnfs.cli_common import settings_for as _settings


def apply_command(data_dir: DataDir = None) -> None:
    """Register the feature repository in DATA_DIR's registry (what `feast apply` does, in ~5 s)."""
    from churnfs.store import apply_repo

    _summary("feast apply", apply_repo(_settings(data_dir)))


def materialize_command(
    end: Annotated[
        datetime | None, typer.Option(help="Materialize up to this UTC time (default: the world's end).")
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Delete this project's online values first: needed after rebuilding the offline store "
            "(Feast keeps a stored value whose event time is not older than the new one).",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Load the latest feature values into the online store (same engine as `feast materialize`)."""
    from datetime import UTC

    from churnfs.store import materialize

    summary = materialize(_settings(data_dir), end.replace(tzinfo=UTC) if end else None, replace=replace)
    _summary("materialize", summary)


def materialize_window_command(data_dir: DataDir = None) -> None:
    """Print the world's START END in ISO 8601, for `feast materialize $(churnfs materialize-window)`."""
    from churnfs.store import materialization_window

    start, end = materialization_window(_settings(data_dir))
    typer.echo(f"{start.isoformat()} {end.isoformat()}")


def check_consistency_command(
    sample: Annotated[int, typer.Option(help="Users to sample.", min=1)] = 200,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Check that the online store serves the offline point-in-time values; exit 1 naming the first
    mismatches when it does not."""
    from churnfs.store import check_consistency

    report = check_consistency(_settings(data_dir), sample=sample, seed=seed)
    _summary("online/offline consistency", report.summary())
    report.raise_if_inconsistent()


def online_store_up_command(
    cluster: Annotated[
        int | None,
        typer.Option(
            "--cluster",
            min=3,
            help="Start a private Redis Cluster of this many masters under DATA_DIR instead (even "
            "when a Redis answers at REDIS_CONNECTION_STRING); later commands on this DATA_DIR use it.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Make sure this world has an online store: the configured Redis, else a private redis-server
    under DATA_DIR, else Feast's SQLite store (said in one line); with --cluster N a private
    N-master Redis Cluster under DATA_DIR."""
    from churnfs.store.embedded import start_embedded_online_store

    settings = _settings(data_dir)
    store = start_embedded_online_store(settings, cluster_masters=cluster)
    if store is None:
        typer.echo(f"online store: Redis at {settings.redis_connection_string}")
    elif store.kind == "redis_cluster":
        typer.echo(f"online store: using {store.describe()}")
    else:
        typer.echo(
            f"online store: nothing answers at {settings.redis_connection_string}; using {store.describe()}"
        )


def online_store_down_command(data_dir: DataDir = None) -> None:
    """Stop this world's private redis-server or Redis Cluster, if `online-store up` started one."""
    from churnfs.store.embedded import stop_embedded_online_store

    stopped = stop_embedded_online_store(_settings(data_dir))
    typer.echo(f"online store: stopped {stopped.describe()}" if stopped else "online store: nothing to stop")


def register(app: typer.Typer, clean_errors: Callable[[Any], Any]) -> None:
    """Add the feature store commands to ``app``, each wrapped in ``clean_errors``."""
    app.command("apply")(clean_errors(apply_command))
    app.command("materialize")(clean_errors(materialize_command))
    app.command("materialize-window")(clean_errors(materialize_window_command))
    app.command("check-consistency")(clean_errors(check_consistency_command))
    online = typer.Typer(help="The embedded online store for a laptop demo.", no_args_is_help=True)
    online.command("up")(clean_errors(online_store_up_command))
    online.command("down")(clean_errors(online_store_down_command))
    app.add_typer(online, name="online-store")
