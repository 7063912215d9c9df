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
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123."),
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="OTLP/gRPC port (0 = any free port).")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option("--http-port", help="OTLP/HTTP port (0 = any free port).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default localhost).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Separate port for /metrics, /healthz, /readyz.")
    ] = None,
    exporter: Annotated[
        str | None, typer.Option("--exporter", help="clickhouse (direct, durable) or kafka.")
    ] = None,
    brokers: Annotated[
        str | None, typer.Option("--brokers", help="Kafka bootstrap servers (with --exporter kafka).")
    ] = None,
) -> None:
    """Receive OTLP (gRPC and HTTP) and store it durably; SIGTERM/Ctrl-C drain in-flight work first."""
    s = cliutil.settings(
        ctx,
        storage={"dsn": storage},
        collector={
            "grpc_port": grpc_port,
            "http_port": http_port,
            "host": host,
            "metrics_port": metrics_port,
            "exporter": exporter,
        },
        kafka={"brokers": brokers},
    )
    from forewarn.collector.server import serve

    try:
        serve(s)
    except OSError as e:
        cliutil.fail(f"collector could not start: {e}", 1)
    except ConnectionError as e:
        cliutil.fail(str(e), 1)
