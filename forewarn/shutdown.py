"""Ctrl-C for long-running commands: the first SIGINT/SIGTERM drains and stops cleanly, a
second SIGINT forces the exit at once (a drain can take up to ``collector.drain_timeout_s``, and
a user who presses Ctrl-C again means it)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

log = logging.getLogger("forewarn")
FORCED_EXIT_CODE = 130


def _force_exit() -> None:
    sys.stderr.write("forewarn: second interrupt, exiting now without draining\n")
    sys.stderr.flush()
    os._exit(FORCED_EXIT_CODE)


def on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` on the first SIGINT/SIGTERM; exit at once on a second SIGINT."""

    def first(signame: str) -> None:
        if stop.is_set():
            if signame == "SIGINT":
                _force_exit()
            return
        log.info("%s received: draining and stopping (Ctrl-C again to exit at once)", signame)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first, sig.name)


def stop_event(extra_signals: tuple[int, ...] = ()) -> threading.Event:
    """A threading event set on the first SIGINT/SIGTERM; a second SIGINT exits at once."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            _force_exit()
        log.info("received %s, shutting down (Ctrl-C again to exit at once)", signal.Signals(signum).name)
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM, *extra_signals):
        signal.signal(s, handler)
    return stop
