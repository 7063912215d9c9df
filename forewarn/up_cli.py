"""``forewarn up``: run the whole product embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forewarn import cliutil


def register(app: typer.Typer) -> None:
    app.command("up")(up_cmd)


def up_cmd(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where the embedded store and state live (default ./data)."),
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="DSN instead of the embedded store in --data-dir.")
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="OTLP/gRPC port (default 4317).")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option("--http-port", help="OTLP/HTTP port (default 4318).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Interface the receivers bind.")] = None,
    alerts_config: Annotated[
        Path | None,
        typer.Option("--alerts-config", help="Alertmanager-format routing config for the alert router."),
    ] = None,
    alerts_listen: Annotated[
        str | None,
        typer.Option("--alerts-listen", help="HOST:PORT of the alert router (default 127.0.0.1:9093)."),
    ] = None,
    flows: Annotated[bool, typer.Option("--flows/--no-flows", help="Run the scoring flows.")] = True,
    kafka: Annotated[
        bool,
        typer.Option("--kafka", help="Collector publishes to Kafka; an in-process ingester loads the store."),
    ] = False,
    brokers: Annotated[
        str | None, typer.Option("--brokers", help="Kafka bootstrap servers (with --kafka).")
    ] = None,
) -> None:
    """Collector, alert router and flows together on the embedded store; Ctrl-C drains and stops."""
    s = cliutil.settings(
        ctx,
        data_dir=str(data_dir) if data_dir else None,
        storage={"dsn": storage},
        collector={
            "grpc_port": grpc_port,
            "http_port": http_port,
            "host": host,
            "exporter": "kafka" if kafka else None,
        },
        kafka={"brokers": brokers},
    )
    if alerts_config is not None and not alerts_config.is_file():
        cliutil.fail(f"--alerts-config: no such file: {alerts_config}")
    if alerts_config is not None:
        from forewarn.alerts.config import load_config

        try:
            load_config(alerts_config)
        except Exception as e:
            cliutil.fail(f"--alerts-config {alerts_config}: {e}")
    import asyncio

    from forewarn.up import Up, run

    try:
        asyncio.run(run(Up(s, alerts_config, alerts_listen, flows=flows)))
    except (OSError, ConnectionError, ValueError) as e:
        cliutil.fail(f"forewarn up could not start: {e}", 1)
