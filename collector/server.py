"""The collector as one composable service: gRPC + HTTP receivers, group-commit pipeline, exporter.

``CollectorService`` runs inside any asyncio program (``forewarn up`` composes it with other
services); ``serve()`` is the blocking ``forewarn collector`` entry point with signal handling.
Shutdown order matters for durability: stop accepting, let in-flight requests finish (their rows
become durable), drain the queue, then close the exporter and release the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import uvicorn
from forewarn.collector import telemetry
from forewarn.collector.exporter import Exporter
from forewarn.collector.grpc_receiver import make_server
from forewarn.collector.http_receiver import HttpReceiver, make_app, ops_routes
from forewarn.collector.memory import MemoryGuard
from forewarn.collector.pipeline import Pipeline
from forewarn.collector.receiver import Receiver
from forewarn.collector.tls import ReloadingTLS
from starlette.routing import Route

from forewarn.config import Settings, mask_dsn
from forewarn.net import listen_sockets

if TYPE_CHECKING:
    from forewarn.clickhouse_http import ClickHouseHTTPServer
    from forewarn.storage.gateway import Gateway

log = logging.getLogger(__name__)
_listen = listen_sockets  # its old name: the helper moved to forewarn.net


def make_exporter(settings: Settings) -> Exporter:
    """The exporter named by ``collector.exporter``; the Kafka one is imported only when chosen."""
    if settings.collector.exporter == "kafka":
        from forewarn.collector.kafka_exporter import KafkaExporter

        return KafkaExporter(settings)
    from forewarn.collector.clickhouse_exporter import ClickHouseExporter

    return ClickHouseExporter(settings, settings.storage_dsn)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the owner of the event loop decides about shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CollectorService:
    """OTLP receivers on ``grpc_port``/``http_port`` (0 = ephemeral; the bound ports are set on start).

    >>> from forewarn.config import load_settings
    >>> svc = CollectorService(load_settings(overrides={"collector": {"grpc_port": 0}}))
    >>> svc.grpc_port, svc.http_port
    (0, 4318)
    """

    def __init__(self, settings: Settings, exporter: Exporter | None = None):
        self.settings = settings
        c = settings.collector
        self.host = c.host
        self.grpc_port = c.grpc_port
        self.http_port = c.http_port
        self.metrics_port = c.metrics_port
        self.exporter = exporter or make_exporter(settings)
        self.pipeline = Pipeline(
            self.exporter,
            max_queue_bytes=c.max_queue_bytes,
            max_batch_bytes=c.max_batch_bytes,
            linger_s=c.batch_linger_ms / 1000,
            retry_after_s=c.retry_after_s,
            memory=MemoryGuard(c.memory_limit_mib, c.memory_spike_limit_mib, retry_after_s=c.retry_after_s)
            if c.memory_limit_mib
            else None,
            max_queue_wait_s=c.max_queue_wait_s,
        )
        self.receiver = Receiver(
            self.pipeline,
            [t.get_secret_value() for t in c.auth_tokens],
            {name: [t.get_secret_value() for t in tokens] for name, tokens in c.tenants.items()},
        )
        self.tls = ReloadingTLS(c.tls) if c.tls.enabled else None  # a bad file fails here, loudly
        self._grpc: grpc.aio.Server | None = None
        self._http: list[tuple[_Uvicorn, asyncio.Task[None]]] = []
        self._gateway: Gateway | None = None
        self.clickhouse_http: ClickHouseHTTPServer | None = None
        self._started = False

    def ready(self) -> bool:
        ok = self._started and self.exporter.ready() and self.pipeline.accepting()
        telemetry.EXPORTER_READY.set(1 if self.exporter.ready() else 0)
        return ok

    async def start(self) -> None:
        c = self.settings.collector
        await self.exporter.start()
        self._start_gateway()
        await self.pipeline.start()

        self._grpc = make_server(self.receiver, c.max_request_bytes)
        address = f"{_grpc_host(self.host)}:{self.grpc_port}"
        try:
            if self.tls is not None:
                bound = self._grpc.add_secure_port(address, self.tls.grpc_credentials())
            else:
                bound = self._grpc.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {self.host}:{self.grpc_port} (address in use?)")
        self.grpc_port = bound
        await self._grpc.start()

        otlp = HttpReceiver(
            self.receiver, c.max_request_bytes, max(c.max_queue_bytes, c.max_request_bytes)
        ).routes()
        if self.metrics_port is None:
            self.http_port = await self._serve_http(otlp + ops_routes(self.ready), self.http_port, self.tls)
            self.metrics_port = self.http_port
        else:  # the separate ops port (scrapes, probes) stays plain HTTP
            self.http_port = await self._serve_http(otlp, self.http_port, self.tls)
            self.metrics_port = await self._serve_http(ops_routes(self.ready), self.metrics_port)
        self._started = True
        log.info(
            "collector listening: OTLP/gRPC %s:%d, OTLP/HTTP %s:%d, exporter %s%s",
            self.host,
            self.grpc_port,
            self.host,
            self.http_port,
            self.exporter.name,
            ""
            if self.tls is None
            else (", TLS" + (" with client certificates" if self.tls.cfg.client_ca_file else "")),
        )

    def _start_gateway(self) -> None:
        from forewarn.storage import is_embedded

        dsn = self.settings.storage_dsn
        if self.exporter.name == "clickhouse" and is_embedded(dsn):
            from forewarn.storage.gateway import Gateway

            self._gateway = Gateway(dsn, self.settings.storage.database)
            log.info("store %s is queryable by other processes while the collector runs", mask_dsn(dsn))
            from forewarn.clickhouse_http import serve_store

            self.clickhouse_http = serve_store(self.settings)

    async def _serve_http(self, routes: list[Route], port: int, tls: ReloadingTLS | None = None) -> int:
        socks = listen_sockets(self.host, port)
        config = uvicorn.Config(
            make_app(routes),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.settings.collector.drain_timeout_s,
            h11_max_incomplete_event_size=1024 * 1024,
            ssl_context_factory=(lambda _config, _default: tls.server_context()) if tls is not None else None,
        )
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=socks), name=f"collector-http-{port}")
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"HTTP server on port {port} stopped during start")
            await asyncio.sleep(0.01)
        self._http.append((server, task))
        return socks[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests become durable, drain the queue, release the store."""
        timeout = self.settings.collector.drain_timeout_s
        waits = []
        if self._grpc is not None:
            waits.append(self._grpc.stop(grace=timeout))
        for server, _ in self._http:
            server.should_exit = True
        waits.extend(task for _, task in self._http)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waits, return_exceptions=True)
        self._http.clear()
        self._grpc = None
        await self.pipeline.close(timeout)
        await self.exporter.close()
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None
        if self.clickhouse_http is not None:
            self.clickhouse_http.stop()
            self.clickhouse_http = None
        self._started = False
        log.info("collector stopped")

    async def __aenter__(self) -> CollectorService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _grpc_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def run_until_signalled(settings: Settings) -> None:
    """Start the collector, wait for SIGTERM/SIGINT, then drain and stop (a second Ctrl-C exits
    at once). While it runs, its discovery file tells other commands where it is."""
    from forewarn import discovery
    from forewarn.shutdown import on_stop_signals

    discovery.check_free(settings.data_dir)
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop)
    published = None
    service = CollectorService(settings)
    try:
        await service.start()
        published = discovery.publish(
            settings.data_dir,
            {
                "command": "collector",
                "store": discovery.store_record(settings, service),
                "collector": discovery.collector_record(service),
                "clickhouse_http": discovery.clickhouse_http_record(service),
            },
        )
    except BaseException:
        await service.stop()
        raise
    try:
        await stop.wait()
    finally:
        published.remove()
        await service.stop()


def serve(settings: Settings) -> None:
    """Blocking entry point of ``forewarn collector``; returns after a clean drain."""
    asyncio.run(run_until_signalled(settings))
