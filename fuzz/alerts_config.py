"""Fuzz the router's configuration loaders: the Alertmanager YAML (``alerts/config.py``, as
``forewarn alerts --config`` and ``/-/reload`` load it) and the web configuration file
(``alerts/webconfig.py``, ``--web.config.file``).

Input: one byte choosing the loader (even: alerts config, odd: web config), then the file's
bytes, written to a file and loaded as the router does. The clean refusals are
:class:`AlertsConfigError` and :class:`WebConfigError`. An accepted alerts config must build
everything the router builds from it (routing tree, inhibitor, time intervals, every
receiver's integrations; a TLS file it names that cannot be read is an AlertsConfigError too),
route label sets, and render its redacted form for ``/api/v2/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports(include=["forewarn"]):
    from forewarn.alerts.config import AlertsConfigError, load_config, redacted_yaml
    from forewarn.alerts.dispatch import Dispatcher
    from forewarn.alerts.notifiers import HTTPClients
    from forewarn.alerts.provider import AlertProvider
    from forewarn.alerts.silences import Silences
    from forewarn.alerts.state import StateStore
    from forewarn.alerts.timeintervals import any_contains
    from forewarn.alerts.webconfig import WebConfigError, load_web_config

from common import keep_crashes, scratch

DIR = scratch("fuzz-config-")
FILE = DIR / "config.yml"
LABELS = [
    {"alertname": "Down", "severity": "critical", "service": "api"},
    {"alertname": "Slow", "team": "frontend", "env": "prod"},
    {"alertname": "x", "a": 'b"c', "é": "\n"},
]
TIMES = [datetime(2026, 1, 5, 23, 30, tzinfo=UTC), datetime(2026, 12, 31, 0, 0, tzinfo=UTC)]
LOOP = asyncio.new_event_loop()
STORE = StateStore(None)


async def build(cfg) -> None:  # type: ignore[no-untyped-def]
    provider = AlertProvider(STORE, max_alerts=10)
    clients = HTTPClients()
    try:
        d = Dispatcher(cfg, provider, Silences(STORE), STORE, clients, "http://x")
        for labels in LABELS:
            for route in d.tree.match(labels):
                route.group_labels(labels)
            d.inhibitor.mutes(labels, 0.0)
        for intervals in d.pipeline.intervals.values():
            for t in TIMES:
                any_contains(intervals, t)
    finally:
        await clients.aclose()


@keep_crashes
def test_one_input(data: bytes) -> None:
    if not data:
        return
    FILE.write_bytes(data[1:])
    if data[0] % 2:
        with contextlib.suppress(WebConfigError):
            load_web_config(FILE)
        return
    try:
        cfg = load_config(FILE)
    except AlertsConfigError:
        return
    try:
        LOOP.run_until_complete(build(cfg))
    except AlertsConfigError:
        return  # a TLS file a receiver names cannot be read: refused at start or reload
    redacted_yaml(data[1:].decode())


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
