"""Keeps the collector under ``collector.memory_limit_mib``: samples its resident memory, refuses new
data above the soft limit, sizes batches to the headroom, and hands freed memory back to the OS.

Why: queue and body budgets count payload bytes, but a group commit's insert needs 10-20 times its
batch in engine memory (measured with chDB: +87 MiB for a 6.5 MiB traces batch), and three signals
insert at once. At several times the sustainable rate only a bound on the memory itself holds.

What is measured: the process's *anonymous* resident memory (``RssAnon + RssShmem`` of
``/proc/self/status``): heap, queues, the engine's buffers. File-backed pages are not counted: the
embedded engine's code alone maps about 300 MB of its library, clean pages the kernel shares and
can drop at any time, so they are the same with or without load.

Like the OpenTelemetry Collector's memory_limiter: above ``limit - spike`` (the soft limit), while
requests are waiting in the queue, new requests are refused as overloaded (HTTP 429 with
Retry-After, gRPC RESOURCE_EXHAUSTED with RetryInfo) until memory falls back; requests already
accepted are still committed. (A spike while nothing waits is an insert or a merge in the engine:
refusing would not free it.) Above the
limit itself, requests still waiting in the queue are refused as well (their clients retry later),
Within two spikes of the limit, the signals' inserts run one at a time, each writer takes only
as much as its share of the room left allows, and freed memory is handed back to the OS at most
once a second (``malloc_trim``, and the embedded engine's ``SYSTEM JEMALLOC PURGE``: its
allocator keeps freed pages for a while, most of the resident figure after a burst of inserts).

>>> g = MemoryGuard(limit_mib=500, spike_mib=100, reader=lambda: 380 * MIB)
>>> g.sample(); g.over_soft, g.over_hard, g.batch_budget(32 * MIB) // MIB
(False, False, 2)
>>> g.reader = lambda: 450 * MIB
>>> g.sample(); g.over_soft
True
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

from forewarn.collector import telemetry as m

log = logging.getLogger(__name__)
MIB = 1 << 20
EXPANSION = 20  # engine memory per batch byte during an insert (measured 10-21x)
WRITERS = 3  # one per signal, all may insert at once
MIN_ROOM = 128 * MIB  # working room the limit must leave above what the process holds at start


def anonymous_resident_bytes() -> int:
    """RssAnon + RssShmem of this process (Linux); 0 where /proc is not there (no bound then)."""
    total = 0
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"RssAnon:", b"RssShmem:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


def resident_bytes(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, RssAnon + RssShmem) of a process, for reports."""
    rss = anon = 0
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith((b"RssAnon:", b"RssShmem:")):
                anon += int(line.split()[1]) * 1024
    return rss, anon


def _malloc_trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return (lambda: libc.malloc_trim(0)) if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


class MemoryGuard:
    """Samples memory every ``interval_s``; ``check()`` raises an overloaded refusal above the soft limit."""

    def __init__(
        self,
        limit_mib: float,
        spike_mib: float,
        interval_s: float = 0.05,
        retry_after_s: float = 2.0,
        reader: Callable[[], int] = anonymous_resident_bytes,
    ):
        self.limit = int(limit_mib * MIB)
        self.soft = max(0, int((limit_mib - spike_mib) * MIB))
        self.interval_s = interval_s
        self.retry_after_s = retry_after_s
        self.reader = reader
        self.used = 0
        self.over_soft = self.over_hard = False
        self.on_hard: Callable[[], None] | None = None  # the pipeline sheds its queue
        # blocking calls that hand freed memory back to the OS (run in a thread): the C heap's
        # malloc_trim, and the exporter's (an embedded engine purges its allocator's dirty pages)
        self.relievers: list[Callable[[], object]] = [t for t in (_malloc_trim(),) if t is not None]
        self._last_trim = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def sample(self) -> None:
        self.used = self.reader()
        was = self.over_soft
        self.over_soft = self.enabled and self.used >= self.soft
        self.over_hard = self.enabled and self.used >= self.limit
        m.MEMORY_BYTES.set(self.used)
        if self.over_soft != was:
            log.warning(
                "memory %s the soft limit (%d of %d MiB): %s new requests",
                "above" if self.over_soft else "back under",
                self.used // MIB,
                self.soft // MIB,
                "refusing" if self.over_soft else "accepting",
            )

    def check(self) -> None:
        """Raise the overloaded refusal while memory is above the soft limit."""
        if self.over_soft:
            from forewarn.collector.pipeline import Refusal

            raise Refusal(
                "overloaded",
                f"collector memory is above its limit ({self.used // MIB} MiB, "
                f"accepting again under {self.soft // MIB} MiB)",
                self.retry_after_s,
            )

    def concurrent_exports(self) -> int:
        """How many signals may insert at once: all of them with room to spare; one at a time once
        memory is within two spikes of the limit (each insert needs tens of MiB of engine memory)."""
        return 1 if self.tight else WRITERS

    def batch_budget(self, max_batch_bytes: int) -> int:
        """The most a writer should take into one insert now: its share of the room left under the
        limit, divided by what an insert needs per batch byte (at least one request is always taken)."""
        if not self.enabled:
            return max_batch_bytes
        room = max(0, self.limit - self.used) // (EXPANSION * WRITERS)
        return min(max_batch_bytes, room)

    @property
    def tight(self) -> bool:
        """Within two spikes of the limit: inserts take turns and freed memory is handed back."""
        return self.enabled and self.used >= self.limit - 2 * (self.limit - self.soft)

    async def _relieve(self) -> None:
        if self.over_hard and self.on_hard is not None:
            self.on_hard()
        now = time.monotonic()
        if now - self._last_trim < 1.0:
            return
        self._last_trim = now
        for relieve in self.relievers:  # allocators keep freed pages; measured: 287 -> 149 MiB
            try:
                await asyncio.to_thread(relieve)
            except Exception:
                log.debug("releasing memory failed", exc_info=True)

    async def _run(self) -> None:
        while True:
            self.sample()
            if self.tight:
                await self._relieve()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        """Begin sampling. A process that already holds more than the limit leaves room for (other
        services of ``forewarn up``, a test runner) gets its limit raised to what it holds plus
        the spike and ``MIN_ROOM``, with a warning, so the collector can still work."""
        if not self.enabled or self._task is not None:
            return
        held = self.reader()
        spike = self.limit - self.soft
        if held + spike + MIN_ROOM > self.limit:
            limit = held + spike + MIN_ROOM
            log.warning(
                "this process holds %d MiB before the collector's first request; memory limit raised "
                "from %d to %d MiB (set collector.memory_limit_mib for this process)",
                held // MIB,
                self.limit // MIB,
                limit // MIB,
            )
            self.limit, self.soft = limit, limit - spike
        self.sample()
        self._task = asyncio.create_task(self._run(), name="collector-memory")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
