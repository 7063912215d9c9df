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
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import uvicorn
from forewarn.collector import telemetry
from forewarn.collector.exporter import Exporter
from forewarn.collector.grpc_receiver import make_server
from forewarn.collector.http_receiver import HttpReceiver, make_app, ops_routes
from forewarn.collector.pipeline import Pipeline
from forewarn.collector.receiver import Receiver
from starlette.routing import Route

from forewarn.config import Settings, mask_dsn

if TYPE_CHECKING:
    from forewarn.storage.gateway import Gateway

log = logging.getLogger(__name__)


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


def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (``localhost`` may be 127.0.0.1 and ::1, and
    clients pick either), all on one port: the first bind picks it when ``port`` is 0."""
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            if addr[0] in seen:
                continue
            seen.add(addr[0])
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], port, *addr[2:]))
            port = sock.getsockname()[1]
            sock.listen(1024)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


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
        )
        self.receiver = Receiver(self.pipeline, [t.get_secret_value() for t in c.auth_tokens])
        self._grpc: grpc.aio.Server | None = None
        self._http: list[tuple[_Uvicorn, asyncio.Task[None]]] = []
        self._gateway: Gateway | None = None
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
        try:
            bound = self._grpc.add_insecure_port(f"{_grpc_host(self.host)}:{self.grpc_port}")
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
            self.http_port = await self._serve_http(otlp + ops_routes(self.ready), self.http_port)
            self.metrics_port = self.http_port
        else:
            self.http_port = await self._serve_http(otlp, self.http_port)
            self.metrics_port = await self._serve_http(ops_routes(self.ready), self.metrics_port)
        self._started = True
        log.info(
            "collector listening: OTLP/gRPC %s:%d, OTLP/HTTP %s:%d, exporter %s",
            self.host,
            self.grpc_port,
            self.host,
            self.http_port,
            self.exporter.name,
        )

    def _start_gateway(self) -> None:
        from forewarn.storage import is_embedded

        dsn = self.settings.storage_dsn
        if self.exporter.name == "clickhouse" and is_embedded(dsn):
            from forewarn.storage.gateway import Gateway

            self._gateway = Gateway(dsn, self.settings.storage.database)
            log.info("store %s is queryable by other processes while the collector runs", mask_dsn(dsn))

    async def _serve_http(self, routes: list[Route], port: int) -> int:
        socks = _listen(self.host, port)
        config = uvicorn.Config(
            make_app(routes),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.settings.collector.drain_timeout_s,
            h11_max_incomplete_event_size=1024 * 1024,
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
    """Start the collector, wait for SIGTERM/SIGINT, then drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    service = CollectorService(settings)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    try:
        await stop.wait()
        log.info("signal received: draining")
    finally:
        await service.stop()


def serve(settings: Settings) -> None:
    """Blocking entry point of ``forewarn collector``; returns after a clean drain."""
    asyncio.run(run_until_signalled(settings))
