"""Test support for the collector tests: run a CollectorService on its own event loop in a thread
(so synchronous clients like the OpenTelemetry SDK exporters can talk to it), and an exporter
wrapper whose failures and stalls the test controls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from forewarn.collector.exporter import Exporter, ExportError
from forewarn.collector.server import CollectorService

from forewarn.config import Settings


class ControlledExporter:
    """Wraps a real exporter (or records payloads when there is none); the test can make exports
    fail as if storage were down (``down``) or stall them (``gate`` cleared)."""

    name = "controlled"

    def __init__(self, inner: Exporter | None = None):
        self.inner = inner
        self.down = False
        self.retry_after_s = 1.0
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[tuple[str, list[bytes]]] = []

    async def start(self) -> None:
        if self.inner is not None:
            await self.inner.start()

    async def export(self, signal: str, payloads: list[bytes]) -> None:
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        if self.down:
            raise ExportError("storage is down (test)", retryable=True, retry_after_s=self.retry_after_s)
        if self.inner is not None:
            await self.inner.export(signal, payloads)
        self.batches.append((signal, list(payloads)))

    def ready(self) -> bool:
        return self.inner.ready() if self.inner is not None else True

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


class RunningCollector:
    """``with RunningCollector(settings) as svc:`` -- a started service on ephemeral ports."""

    def __init__(self, settings: Settings, exporter: Exporter | None = None):
        s = settings.model_copy(deep=True)
        s.collector.host = "127.0.0.1"
        s.collector.grpc_port = 0
        s.collector.http_port = 0
        self.service = CollectorService(s, exporter)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="collector-test", daemon=True)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> CollectorService:
        self._thread.start()
        self.run(self.service.start())
        return self.service

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
