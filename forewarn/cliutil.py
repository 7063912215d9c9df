"""Shared plumbing for forewarn's commands: settings from flags, clean errors, logging, signals."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from forewarn.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from forewarn.storage.query import StoreReader

log = logging.getLogger("forewarn")

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory: the embedded store and the running forewarn's discovery file "
        "(default: data_dir of the config, ./data).",
    ),
]

# the receiver's flags, the same for `forewarn collector` and `forewarn up`
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123 "
        "(default: the embedded store in --data-dir).",
    ),
]
GrpcPortOpt = Annotated[
    int | None, typer.Option("--grpc-port", help="OTLP/gRPC port (default 4317; 0 = any free port).")
]
HttpPortOpt = Annotated[
    int | None, typer.Option("--http-port", help="OTLP/HTTP port (default 4318; 0 = any free port).")
]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Interface the receivers bind (default localhost).")
]
ClickHouseHttpPortOpt = Annotated[
    int | None,
    typer.Option(
        "--clickhouse-http-port",
        help="ClickHouse HTTP interface for the embedded store (default 8123; 0 = off).",
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error on stderr and exit; no traceback for user errors."""
    typer.echo(f"forewarn: {message}", err=True)
    raise typer.Exit(code)


def settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Effective settings: the --config file, FOREWARN_* environment, then these flag overrides."""
    config_path: Path | None = (ctx.find_root().obj or {}).get("config")
    if isinstance(overrides.get("data_dir"), Path):
        overrides["data_dir"] = str(overrides["data_dir"])
    try:
        s = load_settings(config_path, overrides)
    except ConfigError as e:
        fail(str(e))
    for notice in s.notices:
        typer.echo(f"forewarn: warning: {notice}", err=True)
    setup_logging(s.log_level)
    return s


def reader(s: Settings) -> StoreReader:
    """The store of ``s`` for reading, through the running forewarn when one holds it."""
    from forewarn.storage.query import NoStore, StoreError, open_reader

    try:
        return open_reader(s)
    except NoStore as e:
        fail(str(e), 1)
    except (StoreError, ConnectionError, ValueError) as e:
        fail(str(e), 1)


def router(s: Settings, url: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """The alert router a command talks to, and the token to send.

    ``--url`` first, then ``alerts.url`` (config file or ``FOREWARN_ALERTS__URL``), then the
    router of the forewarn running on ``--data-dir`` (its discovery file), then ``alerts.listen``.
    The token: ``--token``, ``alerts.token`` (``FOREWARN_ALERTS__TOKEN``), else the running
    router's own when that is the one addressed.
    """
    from forewarn import discovery

    running = (discovery.read(s.data_dir) or {}).get("router") or {}
    target = url or s.alerts.url or running.get("url") or f"http://{s.alerts.listen}"
    if token is None and s.alerts.token is not None:
        token = s.alerts.token.get_secret_value()
    if token is None and running.get("url") and target.rstrip("/") == running["url"].rstrip("/"):
        token = running.get("token")
    return target, token


# Libraries that log every request at INFO; their chatter would drown forewarn's own lines.
QUIET_LOGGERS = ("httpx", "httpcore", "prefect", "uvicorn.error", "kafka")


def setup_logging(level: str) -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    if logging.getLogger().handlers:
        logging.getLogger().setLevel(level)
        return
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def wait_for_shutdown(extra_signals: tuple[int, ...] = ()) -> threading.Event:
    """An event set on SIGINT/SIGTERM, so long-running commands can drain and release their data
    dir; a second Ctrl-C exits at once."""
    from forewarn.shutdown import stop_event

    return stop_event(extra_signals)


def print_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Rows aligned under a header, one line each (so scripts can still cut them), nothing cut
    short; the last column is left free to run long.

    >>> print_table(("ID", "STATE", "NOTE"), [("a1", "active", "x y")])
    ID  STATE   NOTE
    a1  active  x y
    """
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    for r in cells:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip())
