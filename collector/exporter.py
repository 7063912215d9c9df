"""The exporter interface: where the collector's receivers hand accepted OTLP payloads for durability.

The receivers answer a client only after ``export()`` returned, so an exporter must return only once
the payloads are durable (committed in ClickHouse, acknowledged by Kafka, ...). Failures are
``ExportError``; ``retryable`` decides whether the client is told to retry (503/UNAVAILABLE) or
that its data was refused for good.

>>> e = ExportError("storage down", retryable=True, retry_after_s=2)
>>> (str(e), e.retryable, e.retry_after_s)
('storage down', True, 2)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

SIGNALS = ("traces", "metrics", "logs")


class ExportError(Exception):
    """An export that did not become durable; ``retryable`` says whether a retry can succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def short_error(e: BaseException) -> str:
    """First line of a storage error, bounded: enough to act on, no payload dumps in responses."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


@runtime_checkable
class Exporter(Protocol):
    """Makes batches of serialized OTLP ``Export*ServiceRequest`` messages durable.

    ``signal`` is one of ``SIGNALS``; ``payloads`` are already validated, serialized requests of that
    signal. ``export`` is called by one writer task per signal at a time, may be called concurrently
    for different signals, and returns only when every payload is durable; it raises ``ExportError``.
    """

    name: str

    async def start(self) -> None: ...

    async def export(self, signal: str, payloads: list[bytes]) -> None: ...

    def ready(self) -> bool: ...

    async def close(self) -> None: ...
