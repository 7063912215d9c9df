"""Commands of forewarn.collector: ``forewarn collector``."""

from __future__ import annotations

from typing import Annotated

import typer

from forewarn import cliutil


def register(app: typer.Typer) -> None:
    """Add this component's commands to the ``forewarn`` CLI."""
    app.command("collector")(collector_cmd)


def collector_cmd(
    ctx: typer.Context,
    storage: cliutil.StorageOpt = None,
    grpc_port: cliutil.GrpcPortOpt = None,
    http_port: cliutil.HttpPortOpt = None,
    host: cliutil.HostOpt = None,
    clickhouse_http_port: cliutil.ClickHouseHttpPortOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Separate port for /metrics, /healthz, /readyz.")
    ] = None,
    exporter: Annotated[
        str | None, typer.Option("--exporter", help="clickhouse (direct, durable) or kafka.")
    ] = None,
    brokers: Annotated[
        str | None, typer.Option("--brokers", help="Kafka bootstrap servers (with --exporter kafka).")
    ] = None,
    data_dir: cliutil.DataDirOpt = None,
) -> None:
    """Receive OTLP (gRPC and HTTP) and store it durably.

    SIGTERM/Ctrl-C drain in-flight work first; a second Ctrl-C exits at once.
    """
    from forewarn.discovery import AlreadyRunning

    s = cliutil.settings(
        ctx,
        data_dir=data_dir,
        storage={"dsn": storage},
        collector={
            "grpc_port": grpc_port,
            "http_port": http_port,
            "host": host,
            "metrics_port": metrics_port,
            "exporter": exporter,
        },
        kafka={"brokers": brokers},
        clickhouse_http={"port": clickhouse_http_port},
    )
    from forewarn.collector.server import serve

    from forewarn.config import ConfigError

    try:
        serve(s)
    except ConfigError as e:  # a TLS file that cannot be used
        cliutil.fail(str(e), 2)
    except (OSError, AlreadyRunning) as e:
        cliutil.fail(f"collector could not start: {e}", 1)
    except ConnectionError as e:
        cliutil.fail(str(e), 1)
    except ValueError as e:  # a configuration only checked at start (e.g. clickhouse_http users)
        cliutil.fail(f"collector could not start: {e}", 1)
