"""``churnfs stream publish|consume|status|demo``, registered on the ``churnfs`` app by ``register``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from churnfs.cli_common import DataDirOption, console, print_summary, settings_for
from churnfs.stream.location import stream_settings


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def publish_command(
    start: Annotated[datetime, typer.Option("--from", help="First event time (UTC), inclusive.")],
    end: Annotated[datetime, typer.Option("--to", help="Last event time (UTC), exclusive.")],
    speed: Annotated[
        float | None,
        typer.Option("--speed", help="N times the events' own pace (default: as fast as possible)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Events per second instead of --speed.")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option("--source", help="World folder to read the events from (default: DATA_DIR)."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Replay a world's raw events in [FROM, TO) into the stream (STREAM_KEY), in time order."""
    from churnfs.stream.publish import publish_events

    settings = stream_settings(settings_for(data_dir))
    source_settings = settings.model_copy(update={"data_dir": source}) if source else None
    summary = publish_events(settings, _utc(start), _utc(end), speed=speed, rate=rate, source=source_settings)
    print_summary("stream publish", summary)


def consume_command(
    max_idle: Annotated[
        float | None,
        typer.Option(
            "--max-idle", help="Stop after this many seconds without entries (default: run forever)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Serve Prometheus metrics (lag, freshness, counts) on this port."
        ),
    ] = None,
    stats_json: Annotated[
        Path | None,
        typer.Option(
            "--stats-json", help="Also write what it did, with every freshness sample, as JSON here."
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Join the consumer group and turn entries into raw-store rows and fresh activity features."""
    from churnfs.stream.consumer import StreamConsumer
    from churnfs.stream.metrics import StreamMetrics

    settings = stream_settings(settings_for(data_dir))
    metrics = StreamMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host, registry=metrics.registry)
    consumer = StreamConsumer(settings, metrics=metrics)
    console.print(f"consumer {consumer.name} in group {consumer.settings.stream_group}", highlight=False)
    try:
        stats = consumer.run(max_idle_s=max_idle)
    except KeyboardInterrupt:
        stats = consumer.stats
    if stats_json is not None:
        import dataclasses
        import json

        from churnfs.io import write_text_atomic

        write_text_atomic(json.dumps({"name": consumer.name, **dataclasses.asdict(stats)}), stats_json)
    print_summary("stream consume", stats.summary())


def status_command(data_dir: DataDirOption = None) -> None:
    """Print the stream's length, the group's lag and pending entries, and its consumers."""
    from churnfs.stream.status import stream_status

    status = stream_status(stream_settings(settings_for(data_dir)))
    consumers = status.pop("consumers")
    print_summary("stream status", status)
    for consumer in consumers:
        console.print(
            f"  {consumer['name']}: {consumer['pending']} pending, idle {consumer['idle_ms'] / 1000:.1f} s",
            highlight=False,
        )


def demo_command(
    users: Annotated[int, typer.Option(min=100, help="Users of the generated world.")] = 20_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 42,
    weeks: Annotated[
        int, typer.Option(min=1, max=8, help="Last weeks of events held back from the batch, then streamed.")
    ] = 3,
    consumers: Annotated[int, typer.Option(min=1, max=8, help="Consumer processes.")] = 2,
    speed: Annotated[
        float, typer.Option(min=0.0, help="N times the events' own pace (0: as fast as possible).")
    ] = 20_000.0,
    data_dir: DataDirOption = None,
) -> None:
    """Generate a world, hold back its last weeks of events, build and materialize the rest, then
    stream the held-back events while the API serves, and check online == batch (docs/stream.md)."""
    from churnfs.stream.demo import run_stream_demo

    summary = run_stream_demo(
        settings_for(data_dir), users=users, seed=seed, weeks=weeks, consumers=consumers, speed=speed or None
    )
    print_summary("stream demo", summary)


def register(app: typer.Typer, clean_errors: Callable[[Any], Any]) -> None:
    """Add ``churnfs stream ...`` to ``app``."""
    stream = typer.Typer(
        help="The live event stream: publish, consume, status, demo (docs/stream.md).", no_args_is_help=True
    )
    stream.command("publish")(clean_errors(publish_command))
    stream.command("consume")(clean_errors(consume_command))
    stream.command("status")(clean_errors(status_command))
    stream.command("demo")(clean_errors(demo_command))
    app.add_typer(stream, name="stream")
