"""Shared plumbing for forewarn's commands: settings from flags, clean errors, logging, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import typer

from forewarn.config import ConfigError, Settings, load_settings

log = logging.getLogger("forewarn")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error on stderr and exit; no traceback for user errors."""
    typer.echo(f"forewarn: {message}", err=True)
    raise typer.Exit(code)


def settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Effective settings: the --config file, FOREWARN_* environment, then these flag overrides."""
    config_path: Path | None = (ctx.find_root().obj or {}).get("config")
    try:
        s = load_settings(config_path, overrides)
    except ConfigError as e:
        fail(str(e))
    setup_logging(s.log_level)
    return s


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
    """An event set on SIGINT/SIGTERM, so long-running commands can drain and release their data dir."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM, *extra_signals):
        signal.signal(s, handler)
    return stop
