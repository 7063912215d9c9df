"""Group commit: concurrent requests share one durable export per signal, under a memory budget.

Each signal has a writer task. While one batch is being exported, new requests queue; the writer
then takes everything queued (up to ``max_batch_bytes``) as the next batch, so the commit rate
follows the load without a fixed batch size. A request's future resolves only after the export of
its batch returned, i.e. once its rows are durable. Queued bytes are bounded by
``max_queue_bytes``: past it, requests are refused at once with a retryable status; with a
:class:`~forewarn.collector.memory.MemoryGuard`, so are requests while memory is above its soft
limit, batches shrink to the memory left, and above the limit itself the queue is refused too.
With ``max_queue_wait_s``, a signal's queue holds at most that many seconds of work (at the rate
its recent exports committed bytes): past it, requests are refused as overloaded, so under
overload the answers come before the clients' export timeout instead of after it. After a
retryable export failure a short circuit breaker refuses that signal's new and queued requests
as unavailable for ``retry_after_s``, so clients back off instead of piling up behind a dead store.

>>> import asyncio
>>> class Memory:
...     name, stored = "memory", []
...     async def start(self): pass
...     async def export(self, signal, payloads): self.stored.append((signal, len(payloads)))
...     def ready(self): return True
...     async def close(self): pass
>>> async def demo():
...     p = Pipeline(Memory(), max_queue_bytes=1 << 20, max_batch_bytes=1 << 20, linger_s=0.01)
...     await p.start()
...     await asyncio.gather(*(p.submit("traces", b"x" * 10, 1) for _ in range(5)))
...     await p.close(timeout_s=1)
...     return p.exporter.stored
>>> asyncio.run(demo())
[('traces', 5)]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forewarn.collector import telemetry as m
from forewarn.collector.exporter import SIGNALS, Exporter, ExportError

if TYPE_CHECKING:
    from forewarn.collector.memory import MemoryGuard

log = logging.getLogger(__name__)

ARRIVAL_GAP_S = 0.003  # requests still streaming in if one arrives within this gap
ADAPTIVE_FRACTION = 0.25  # of the last export's duration, the most a batch waits for company
MAX_ADAPTIVE_LINGER_S = 0.1


class Refusal(Exception):
    """A request the collector does not accept; ``kind`` picks the HTTP status and gRPC code.

    Kinds: bad_request, unauthenticated, too_large, unsupported (permanent) and overloaded,
    unavailable (retryable, with ``retry_after_s``).
    """

    def __init__(self, kind: str, message: str, retry_after_s: float | None = None, unread: bool = False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.unread = unread  # refused before its body was read: the connection cannot be reused


@dataclass
class _Pending:
    payload: bytes
    items: int
    future: asyncio.Future[None]


@dataclass
class _Lane:
    """One signal's queue and its writer."""

    queue: deque[_Pending] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    down_until: float = 0.0  # circuit breaker: per signal, so one failing table does not block the rest
    down_reason: str = ""
    nbytes: int = 0  # payload bytes in ``queue``
    last_export_s: float = 0.0
    drain_bps: float = 0.0  # payload bytes committed per second of export, smoothed (0: not known yet)


class Pipeline:
    """Queues validated payloads and commits them in shared batches through the exporter."""

    def __init__(
        self,
        exporter: Exporter,
        *,
        max_queue_bytes: int,
        max_batch_bytes: int,
        linger_s: float = 0.002,
        retry_after_s: float = 2.0,
        memory: MemoryGuard | None = None,
        max_queue_wait_s: float = 0.0,
    ):
        self.exporter = exporter
        self.memory = memory
        self.max_queue_wait_s = max_queue_wait_s
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_bytes = max_batch_bytes
        self.linger_s = linger_s
        self.retry_after_s = retry_after_s
        self.queued_bytes = 0
        self.queued_requests = 0
        self._lanes: dict[str, _Lane] = {}
        self._closing = False
        self._exporting = 0  # signals inserting right now

    async def start(self) -> None:
        if self.memory is not None:
            self.memory.on_hard = self._shed
            relieve = getattr(self.exporter, "relieve_memory", None)
            if relieve is not None:
                self.memory.relievers.append(relieve)
            self.memory.start()
        for signal in SIGNALS:
            lane = _Lane()
            lane.task = asyncio.create_task(self._writer(signal, lane), name=f"collector-writer-{signal}")
            self._lanes[signal] = lane

    def accepting(self) -> bool:
        """False while shutting down or while a circuit breaker holds after a storage failure."""
        now = time.monotonic()
        return not self._closing and all(now >= lane.down_until for lane in self._lanes.values())

    async def submit(self, signal: str, payload: bytes, items: int) -> None:
        """Return once ``payload`` is durable; raise Refusal (overloaded/unavailable) otherwise."""
        if self._closing:
            raise Refusal("unavailable", "collector is shutting down", self.retry_after_s)
        self.check_memory()
        lane = self._lanes[signal]
        if time.monotonic() < lane.down_until:
            raise Refusal("unavailable", f"storage unavailable: {lane.down_reason}", self.retry_after_s)
        size = len(payload)
        if self.queued_bytes + size > self.max_queue_bytes:
            raise Refusal(
                "overloaded",
                f"collector queue full ({self.queued_bytes} of {self.max_queue_bytes} bytes pending)",
                self.retry_after_s,
            )
        if (
            self.max_queue_wait_s
            and lane.drain_bps
            and lane.nbytes + size > self.max_queue_wait_s * lane.drain_bps
        ):
            raise Refusal(
                "overloaded",
                f"{signal} queue holds {lane.nbytes / lane.drain_bps:.1f} s of work "
                f"(at most {self.max_queue_wait_s:g} s are queued)",
                self.retry_after_s,
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.queue.append(_Pending(payload, items, fut))
        lane.nbytes += size
        self._account(size, 1)
        lane.wakeup.set()
        await fut

    def check_memory(self) -> None:
        """Refuse (overloaded) while memory is above the soft limit and requests are already waiting,
        or above the limit itself. A spike while nothing waits (an insert or a merge in the engine)
        does not refuse: refusing would not free that memory, only fail clients at a calm rate."""
        if self.memory is None or not self.memory.over_soft:
            return
        if self.memory.over_hard or any(lane.queue for lane in self._lanes.values()):
            self.memory.check()

    def _account(self, nbytes: int, nrequests: int) -> None:
        self.queued_bytes += nbytes
        self.queued_requests += nrequests
        m.QUEUE_BYTES.set(self.queued_bytes)
        m.QUEUE_REQUESTS.set(self.queued_requests)

    def _batch_limit(self) -> int:
        """``max_batch_bytes``, or less while memory is short: an insert needs many times its batch."""
        if self.memory is None:
            return self.max_batch_bytes
        return self.memory.batch_budget(self.max_batch_bytes)

    def _take(self, lane: _Lane) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        limit = self._batch_limit()
        while lane.queue and (not batch or size + len(lane.queue[0].payload) <= limit):
            p = lane.queue.popleft()
            batch.append(p)
            size += len(p.payload)
        lane.nbytes -= size
        return batch

    async def _gather(self, lane: _Lane) -> None:
        """Let more requests join the batch: ``linger_s`` first; then, while requests keep arriving
        (one at least every ``ARRIVAL_GAP_S``), up to ``ADAPTIVE_FRACTION`` of the last export's
        duration. An insert has a large fixed cost, so a fuller batch raises throughput, and the
        extra wait stays small next to the export it saves; an idle collector waits only ``linger_s``."""
        if not self.linger_s or self._closing:
            return
        start = time.monotonic()
        cap = max(self.linger_s, min(MAX_ADAPTIVE_LINGER_S, ADAPTIVE_FRACTION * lane.last_export_s))
        await asyncio.sleep(self.linger_s)
        seen = len(lane.queue)
        while lane.nbytes < self._batch_limit() and not self._closing:
            left = start + cap - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(ARRIVAL_GAP_S, left))
            if len(lane.queue) == seen:
                return
            seen = len(lane.queue)

    async def _writer(self, signal: str, lane: _Lane) -> None:
        while True:
            await lane.wakeup.wait()
            await self._gather(lane)
            batch = self._take(lane)
            if not lane.queue:
                lane.wakeup.clear()
            if batch:
                await self._commit(signal, lane, batch)

    async def _commit(self, signal: str, lane: _Lane, batch: list[_Pending]) -> None:
        nbytes = sum(len(p.payload) for p in batch)
        m.BATCH_PAYLOADS.labels(signal).observe(len(batch))
        m.BATCH_BYTES.labels(signal).observe(nbytes)
        errors = await self._export(signal, lane, batch)
        self._account(-nbytes, -len(batch))
        for p, error in zip(batch, errors, strict=True):
            if p.future.done():  # the client went away; its rows are stored (or not) all the same
                continue
            if error is None:
                p.future.set_result(None)
            else:
                p.future.set_exception(error)
        unavailable = next((e for e in errors if e is not None and e.kind == "unavailable"), None)
        if unavailable is not None:
            self._fail_queued(unavailable, [lane])

    async def _export(self, signal: str, lane: _Lane, batch: list[_Pending]) -> list[Refusal | None]:
        """One export for the batch; the outcome of each request (None = durable).

        A permanent failure (the exporter says the data itself is bad) of a shared batch is retried
        one request at a time, so a single poisonous request is refused (400) and the requests that
        happened to share its batch are stored, instead of all failing together on every retry.
        """
        t0 = time.perf_counter()
        try:
            await self._export_once(signal, [p.payload for p in batch])
        except ExportError as e:
            m.EXPORT_SECONDS.labels(signal, "error").observe(time.perf_counter() - t0)
            if not e.retryable:
                if len(batch) > 1:
                    return [r for p in batch for r in await self._export(signal, lane, [p])]
                return [Refusal("bad_request", f"cannot store this request: {e}")]
            retry = e.retry_after_s or self.retry_after_s
            self._trip(signal, lane, str(e), retry)
            return [Refusal("unavailable", f"export failed: {e}", retry)] * len(batch)
        except Exception as e:  # an exporter bug must not kill the writer or lose track of requests
            m.EXPORT_SECONDS.labels(signal, "error").observe(time.perf_counter() - t0)
            log.exception("exporter %s failed on %s", self.exporter.name, signal)
            self._trip(signal, lane, type(e).__name__, self.retry_after_s)
            return [Refusal("unavailable", f"export failed: {type(e).__name__}", self.retry_after_s)] * len(
                batch
            )
        took = time.perf_counter() - t0
        m.EXPORT_SECONDS.labels(signal, "ok").observe(took)
        lane.last_export_s = took
        rate = sum(len(p.payload) for p in batch) / max(took, 1e-3)
        lane.drain_bps = rate if not lane.drain_bps else 0.7 * lane.drain_bps + 0.3 * rate
        return [None] * len(batch)

    async def _export_once(self, signal: str, payloads: list[bytes]) -> None:
        while self.memory is not None and self._exporting >= self.memory.concurrent_exports():
            await asyncio.sleep(0.005)  # memory is short: the signals' inserts take turns
        self._exporting += 1
        try:
            await self.exporter.export(signal, payloads)
        finally:
            self._exporting -= 1

    def _trip(self, signal: str, lane: _Lane, reason: str, retry_after_s: float) -> None:
        log.warning("%s export failed (%s); refusing %s for %.1fs", signal, reason, signal, retry_after_s)
        lane.down_reason = reason
        lane.down_until = time.monotonic() + retry_after_s

    def _fail_queued(self, error: Refusal, lanes: list[_Lane] | None = None) -> None:
        """Storage is down: answer everything still queued now, so clients retry instead of waiting."""
        for lane in lanes if lanes is not None else self._lanes.values():
            while lane.queue:
                p = lane.queue.popleft()
                lane.nbytes -= len(p.payload)
                self._account(-len(p.payload), -1)
                if not p.future.done():
                    p.future.set_exception(error)

    def _shed(self) -> None:
        """Memory is above the limit itself: requests still queued are refused (their clients retry
        later) so their payloads are freed; batches being inserted are committed as usual."""
        if self.queued_requests:
            log.warning(
                "memory above its limit: refusing %d queued requests",
                sum(len(x.queue) for x in self._lanes.values()),
            )
        self._fail_queued(
            Refusal("overloaded", "collector memory is above its limit: retry later", self.retry_after_s)
        )

    async def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new requests, wait (bounded) until everything queued is exported, stop the writers."""
        self._closing = True
        deadline = time.monotonic() + timeout_s
        while self.queued_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.queued_requests:
            log.error("drain timed out with %d requests not durable; they get 503", self.queued_requests)
            self._fail_queued(Refusal("unavailable", "collector is shutting down", self.retry_after_s))
        if self.memory is not None:
            await self.memory.stop()
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
