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
import secrets
import threading
from pathlib import Path
from typing import Any

from forewarn import discovery
from forewarn.config import Settings
from forewarn.storage import open_storage

log = logging.getLogger(__name__)

# What the flows, the router and the HTTP interface add to the collector's process in `forewarn up`
# (measured: about 400 MiB of anonymous memory with three services sending 300 spans/s, where
# `forewarn collector` alone holds about 180 MiB). Without it the collector's default bound
# (500 MiB) refused clients' requests at light load, and their retries made buckets look empty.
FLOWS_MEMORY_MIB = 500.0

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


def with_flows_memory(settings: Settings) -> Settings:
    """The settings with the collector's memory bound raised by ``FLOWS_MEMORY_MIB``, unless it was
    set (file, environment or flag) or is off: the bound is on the whole process, which in
    ``forewarn up`` also holds the flows.

    >>> from forewarn.config import load_settings
    >>> with_flows_memory(load_settings()).collector.memory_limit_mib
    1000.0
    >>> with_flows_memory(load_settings(overrides={"collector": {"memory_limit_mib": 600}})).collector.memory_limit_mib
    600.0
    """
    c = settings.collector
    if "memory_limit_mib" in c.model_fields_set or not c.memory_limit_mib:
        return settings
    raised = c.model_copy(update={"memory_limit_mib": c.memory_limit_mib + FLOWS_MEMORY_MIB})
    return settings.model_copy(update={"collector": raised})


def default_alerts_config(data_dir: Path) -> Path:
    path = data_dir / "alertmanager.yml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_ALERTS_CONFIG)
    return path


def no_receiver_warning(path: Path) -> str | None:
    """A warning when the routing tree of an alerts config notifies no one (every receiver it can
    reach has no webhook, Slack or PagerDuty config, and no remediation hook is set up).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "am.yml"
    >>> _ = f.write_text(DEFAULT_ALERTS_CONFIG)
    >>> print(no_receiver_warning(f))  # doctest: +ELLIPSIS
    alerts go to no receiver: ...receiver 'blackhole'...nothing will be notified...
    """
    from forewarn.alerts.config import load_config

    try:
        cfg = load_config(path)
    except Exception:  # the router reports a broken config itself
        return None
    reached, todo = set(), [cfg.route]
    while todo:
        r = todo.pop()
        if r.receiver:
            reached.add(r.receiver)
        todo.extend(r.routes)
    by_name = {r.name: r for r in cfg.receivers}
    notifying = [n for n in reached if n in by_name and (by_name[n].webhook_configs or by_name[n].slack_configs
                                                         or by_name[n].pagerduty_configs)]  # fmt: skip
    if notifying or cfg.remediations:
        return None
    names = ", ".join(f"{n!r}" for n in sorted(reached))
    return (
        f"alerts go to no receiver: the routing tree of {path} reaches only receiver {names}, which has no "
        "webhook, Slack or PagerDuty config, so nothing will be notified. Pass --alerts-config with a "
        "receiver (Alertmanager format)."
    )


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
        self._internal_token = secrets.token_urlsafe(32)  # never logged, never leaves the process
        self._ingest_thread: threading.Thread | None = None
        self.published: discovery.Published | None = None
        self.router_url = ""

    async def start(self) -> None:
        from forewarn.alerts.server import AlertRouter
        from forewarn.collector.server import CollectorService

        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        discovery.check_free(s.data_dir)
        open_storage(s, self.dsn).close()  # migrations, once, before anyone writes
        self.router = await self._start_router(AlertRouter)
        router_url = self.router_url = self._router_url(self.router)
        if warning := no_receiver_warning(self.alerts_config):
            log.warning("%s", warning)
        if self.kafka:
            self._start_ingester()
        self.collector = CollectorService(with_flows_memory(s) if self.with_flows else s)
        await self.collector.start()
        if self.with_flows:
            from forewarn.flows.service import FlowsService

            self.flows = FlowsService(s, self.dsn, router_url)
            await self.flows.start()
        self.published = discovery.publish(s.data_dir, self.record())
        chhttp = self.collector.clickhouse_http
        log.info(
            "forewarn up: OTLP gRPC %s:%d, OTLP HTTP %s:%d, alert router %s, store %s, ClickHouse HTTP %s "
            "(discovery file %s)",
            self.collector.host,
            self.collector.grpc_port,
            self.collector.host,
            self.collector.http_port,
            router_url,
            s.data_dir,
            chhttp.url if chhttp is not None else ("by the ingester" if self.kafka else "off"),
            self.published.path,
        )

    def record(self) -> dict[str, Any]:
        """What other commands need to find this process's parts (see forewarn.discovery)."""
        tokens = [t.get_secret_value() for t in self.settings.alerts.api_tokens]
        return {
            "command": "up",
            "store": discovery.store_record(self.settings, self.collector),
            "router": {"url": self.router_url, "token": tokens[0] if tokens else None},
            "collector": discovery.collector_record(self.collector),
            "clickhouse_http": discovery.clickhouse_http_record(self.collector),
        }

    async def _start_router(self, router_cls: Any) -> Any:
        def make(listen: str) -> Any:
            return router_cls(
                self.alerts_config,
                data_dir=self.settings.data_dir / "alerts",
                storage_dsn=self.dsn,
                database=self.settings.storage.database,
                listen=listen,
                api_tokens=[t.get_secret_value() for t in self.settings.alerts.api_tokens],
                web_config_file=self.settings.alerts.web_config_file,
                internal_tokens=[self._internal_token],
            )

        router = make(self.alerts_listen)
        try:
            await router.start()
        except OSError as e:
            # The Alertmanager default port is often taken (by an Alertmanager): commands that
            # guessed 9093 would then talk to that one, so a free port only when asked for.
            if not self.settings.alerts.listen_fallback:
                raise OSError(
                    f"the alert router cannot listen on {self.alerts_listen}: {e.strerror or e} "
                    "(another Alertmanager or forewarn?). Pass --alerts-listen HOST:PORT (port 0: any "
                    "free port), or --alerts-listen-fallback (alerts.listen_fallback: true) to take a "
                    "free port when this one is busy"
                ) from None
            host = self.alerts_listen.rsplit(":", 1)[0]
            router = make(f"{host}:0")
            await router.start()
            log.warning(
                "alert router: %s is busy, listening on %s instead (written to %s)",
                self.alerts_listen,
                self._router_url(router),
                discovery.path(self.settings.data_dir),
            )
        if router.web is not None:
            # Behind a web config (TLS, basic auth) the flows reach the router with an internal
            # token and trust exactly its certificate (mutual TLS would need a client one).
            from forewarn.alerts.anomaly import register_local_router

            tls = router.web.current().tls
            register_local_router(
                self._router_url(router), self._internal_token, tls.cert_file if tls else None
            )
        return router

    @staticmethod
    def _router_url(router: Any) -> str:
        """Where this process reaches its router (https behind a web config's TLS)."""
        url = discovery.url(router.listen.rsplit(":", 1)[0], router.port)
        return "https" + url.removeprefix("http") if router.scheme == "https" else url

    def _start_ingester(self) -> None:
        from forewarn.collector.ingest import run_ingester

        # run_ingester also serves the embedded store to `forewarn query`, which the collector
        # does only when it writes the store itself.
        self._ingest_thread = threading.Thread(
            target=run_ingester, args=(self.settings, self._ingest_stop), name="forewarn-ingest", daemon=True
        )
        self._ingest_thread.start()

    async def stop(self) -> None:
        if self.published is not None:
            self.published.remove()
            self.published = None
        if self.flows is not None:
            await self.flows.stop()
        if self.collector is not None:
            await self.collector.stop()
        if self._ingest_thread is not None:
            self._ingest_stop.set()
            await asyncio.get_running_loop().run_in_executor(None, self._ingest_thread.join, 60)
        if self.router is not None:
            from forewarn.alerts.anomaly import unregister_local_router

            unregister_local_router(self._router_url(self.router))
            await self.router.stop()


async def run(up: Up) -> None:
    from forewarn.shutdown import on_stop_signals

    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop)
    try:
        await up.start()
        await stop.wait()
    finally:
        try:
            await up.stop()
        except Exception:
            log.exception("error while stopping")
