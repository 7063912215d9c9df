"""``forewarn up``: the whole product in one process on the embedded store.

Collector, flows and the alert router share one asyncio loop and one chDB engine (chDB hosts a
single data directory per process, so every component opens its own clients on the same DSN).
Start order follows the data: the router first (so the first anomaly has somewhere to go), then
the collector, then the score loop; shutdown runs in reverse so the collector drains into the
store before the flows stop reading it. ``--kafka`` swaps the collector's exporter for Kafka and
runs an ingester in the same process, which is the local picture of the scaled-out deployment.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from forewarn.config import Settings
from forewarn.storage import open_storage

log = logging.getLogger(__name__)

# Used when no --alerts-config is given: the router still records and serves alerts (and the
# flows still post anomalies to it), it just has nowhere to notify.
DEFAULT_ALERTS_CONFIG = """\
# Written by `forewarn up` because no --alerts-config was given. Replace it with your
# Alertmanager configuration (same format) and restart, or pass --alerts-config FILE.
route:
  receiver: blackhole
  group_by: [alertname, service]
receivers:
  - name: blackhole
"""


def default_alerts_config(data_dir: Path) -> Path:
    path = data_dir / "alertmanager.yml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_ALERTS_CONFIG)
    return path


class Up:
    """Collector + alert router + flows (+ Kafka ingester) with one lifecycle."""

    def __init__(
        self,
        settings: Settings,
        alerts_config: Path | None = None,
        alerts_listen: str | None = None,
        flows: bool = True,
    ):
        self.settings = settings
        self.dsn = settings.storage_dsn
        self.alerts_config = alerts_config or default_alerts_config(settings.data_dir)
        self.alerts_listen = alerts_listen or settings.alerts.listen
        self.with_flows = flows
        # With the Kafka exporter the store is loaded by an ingester, run here in-process.
        self.kafka = settings.collector.exporter == "kafka"
        self.router: Any = None
        self.collector: Any = None
        self.flows: Any = None
        self._ingest_stop = threading.Event()
        self._ingest_thread: threading.Thread | None = None

    async def start(self) -> None:
        from forewarn.alerts.server import AlertRouter
        from forewarn.collector.server import CollectorService

        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        open_storage(s, self.dsn).close()  # migrations, once, before anyone writes
        self.router = await self._start_router(AlertRouter)
        router_url = f"http://127.0.0.1:{self.router.port}"
        if self.kafka:
            self._start_ingester()
        self.collector = CollectorService(s)
        await self.collector.start()
        if self.with_flows:
            from forewarn.flows.service import FlowsService

            self.flows = FlowsService(s, self.dsn, router_url)
            await self.flows.start()
        log.info(
            "forewarn up: OTLP gRPC %s:%d, OTLP HTTP %s:%d, alert router %s, store %s",
            self.collector.host,
            self.collector.grpc_port,
            self.collector.host,
            self.collector.http_port,
            router_url,
            s.data_dir,
        )

    async def _start_router(self, router_cls: Any) -> Any:
        def make(listen: str) -> Any:
            return router_cls(
                self.alerts_config,
                data_dir=self.settings.data_dir / "alerts",
                storage_dsn=self.dsn,
                database=self.settings.storage.database,
                listen=listen,
                api_tokens=[t.get_secret_value() for t in self.settings.alerts.api_tokens],
            )

        router = make(self.alerts_listen)
        try:
            await router.start()
        except OSError as e:
            # The Alertmanager default port is often taken (by an Alertmanager); take any free one.
            host = self.alerts_listen.rsplit(":", 1)[0]
            log.warning("alert router cannot listen on %s (%s); using a free port", self.alerts_listen, e)
            router = make(f"{host}:0")
            await router.start()
        return router

    def _start_ingester(self) -> None:
        from forewarn.collector.ingest import run_ingester

        # run_ingester also serves the embedded store to `forewarn query`, which the collector
        # does only when it writes the store itself.
        self._ingest_thread = threading.Thread(
            target=run_ingester, args=(self.settings, self._ingest_stop), name="forewarn-ingest", daemon=True
        )
        self._ingest_thread.start()

    async def stop(self) -> None:
        if self.flows is not None:
            await self.flows.stop()
        if self.collector is not None:
            await self.collector.stop()
        if self._ingest_thread is not None:
            self._ingest_stop.set()
            await asyncio.get_running_loop().run_in_executor(None, self._ingest_thread.join, 60)
        if self.router is not None:
            await self.router.stop()


async def run(up: Up) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await up.start()
        await stop.wait()
        log.info("signal received: draining and stopping")
    finally:
        try:
            await up.stop()
        except Exception:
            log.exception("error while stopping")
