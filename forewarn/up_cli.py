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
    data_dir: cliutil.DataDirOpt = None,
    storage: cliutil.StorageOpt = None,
    grpc_port: cliutil.GrpcPortOpt = None,
    http_port: cliutil.HttpPortOpt = None,
    host: cliutil.HostOpt = None,
    clickhouse_http_port: cliutil.ClickHouseHttpPortOpt = None,
    alerts_config: Annotated[
        Path | None,
        typer.Option("--alerts-config", help="Alertmanager-format routing config for the alert router."),
    ] = None,
    alerts_listen: Annotated[
        str | None,
        typer.Option(
            "--alerts-listen",
            help="HOST:PORT of the alert router (default 127.0.0.1:9093; port 0: any free).",
        ),
    ] = None,
    alerts_listen_fallback: Annotated[
        bool | None,
        typer.Option(
            "--alerts-listen-fallback",
            help="If that port is busy, take a free one (printed, and in the discovery file).",
        ),
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
    """Collector, alert router and flows together on the embedded store.

    Other commands find it through DATA_DIR/forewarn-running.json. Ctrl-C drains and stops;
    a second Ctrl-C exits at once.
    """
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
        alerts={"listen_fallback": alerts_listen_fallback},
        clickhouse_http={"port": clickhouse_http_port},
    )
    if alerts_config is not None and not alerts_config.is_file():
        cliutil.fail(f"--alerts-config: no such file: {alerts_config}")
    if alerts_config is not None:
        from forewarn.alerts.config import load_config

        try:
            load_config(alerts_config, startup_checks=True)
        except Exception as e:
            cliutil.fail(f"--alerts-config {alerts_config}: {e}")
    import asyncio

    from forewarn.discovery import AlreadyRunning
    from forewarn.up import Up, run

    try:
        asyncio.run(run(Up(s, alerts_config, alerts_listen, flows=flows)))
    except (OSError, ConnectionError, ValueError, AlreadyRunning) as e:
        cliutil.fail(f"forewarn up could not start: {e}", 1)
