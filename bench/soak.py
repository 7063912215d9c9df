"""Soak and overload of ``forewarn collector`` (durable, embedded chDB), with its memory over time.

An open-loop load (requests are sent at a fixed rate whatever the answers, like a fleet of SDKs)
of unique OTLP requests (traces, metrics, logs in turn; gRPC and HTTP alternately) at a fraction of
the sustainable rate. The sustainable rate is measured first (closed loop, ``--calibrate-s``) unless
``--rate`` gives it. Every ``--every`` seconds it prints the rate offered, accepted and refused (429
/ RESOURCE_EXHAUSTED, 503 / UNAVAILABLE) and the collector's memory from /proc: VmRSS and the
anonymous part (RssAnon + RssShmem) that ``collector.memory_limit_mib`` bounds. At the end: every
acknowledged item must be stored, and the memory trend of the second half (MiB per hour).

    .venv/bin/python bench/soak.py                      # 60 minutes at half the sustainable rate
    .venv/bin/python bench/soak.py --minutes 5 --every 30
    .venv/bin/python bench/soak.py --overload           # calm, 5x the sustainable rate, calm again

``--overload`` runs three phases: ``--calm-s`` at half the rate, ``--overload-s`` at five times it,
``--calm-s`` at half again, and reports per phase what was accepted and refused and the highest
memory, and whether the last calm phase accepted everything again (recovery).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest
from forewarn.collector.memory import resident_bytes as memory  # (VmRSS, RssAnon + RssShmem)

MIB = 1 << 20
SIGNALS = ("traces", "metrics", "logs")


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    refused: int = 0  # 429 / RESOURCE_EXHAUSTED
    unavailable: int = 0  # 503 / UNAVAILABLE
    other: int = 0
    skipped: int = 0  # not sent: the generator's own in-flight bound was reached
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    latencies: list[float] = field(default_factory=list)

    def add(self, o: Tally) -> None:
        for k in ("sent", "ok", "refused", "unavailable", "other", "skipped"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        for s in SIGNALS:
            self.items[s] += o.items[s]
        self.latencies += o.latencies


class Load:
    """Open-loop OTLP load against one collector; counts answers in ``tally``."""

    def __init__(self, grpc_port: int, http_port: int, max_inflight: int):
        import grpc
        import httpx

        self.payloads = {s: ingest.Payloads(s, seed=hash(s) & 0xFFFF) for s in SIGNALS}
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.calls = {s: self.channel.unary_unary(ingest.GRPC_METHOD[s]) for s in SIGNALS}
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}",
            timeout=60,
            limits=httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight),
        )
        self.max_inflight = max_inflight
        self.inflight = 0
        self.tally = Tally()
        self.n = 0

    async def one(self, signal: str, use_grpc: bool) -> None:
        import grpc

        body = self.payloads[signal].next()
        t0 = time.perf_counter()
        self.inflight += 1
        self.tally.sent += 1
        try:
            if use_grpc:
                try:
                    await self.calls[signal](body, timeout=60)
                    status = 200
                except grpc.aio.AioRpcError as e:
                    status = {
                        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
                        grpc.StatusCode.UNAVAILABLE: 503,
                    }.get(e.code(), 500)
            else:
                r = await self.http.post(
                    f"/v1/{signal}", content=body, headers={"Content-Type": "application/x-protobuf"}
                )
                status = r.status_code
        except Exception:
            status = 0
        finally:
            self.inflight -= 1
        if status == 200:
            self.tally.ok += 1
            self.tally.items[signal] += ingest.ITEMS_PER_REQUEST[signal]
            self.tally.latencies.append(time.perf_counter() - t0)
        elif status == 429:
            self.tally.refused += 1
        elif status == 503:
            self.tally.unavailable += 1
        else:
            self.tally.other += 1

    async def run(self, rate: float, seconds: float) -> None:
        """Send ``rate`` requests per second for ``seconds``, on schedule (not waiting for answers)."""
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        k = 0
        while (now := time.perf_counter() - start) < seconds:
            due = int(now * rate) + 1
            while k < due:
                k += 1
                if self.inflight >= self.max_inflight:
                    self.tally.skipped += 1
                    continue
                self.n += 1
                t = asyncio.create_task(self.one(SIGNALS[self.n % 3], self.n % 2 == 0))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(min(0.01, max(0.0, (k / rate) - (time.perf_counter() - start))))
        if tasks:
            await asyncio.gather(*tasks)

    async def close(self) -> None:
        await self.http.aclose()
        await self.channel.close()


async def calibrate(grpc_port: int, http_port: int, seconds: float, clients: int) -> tuple[float, Tally]:
    """Closed loop (each client sends its next request when the last is answered): requests/s accepted."""
    load = Load(grpc_port, http_port, clients)
    stop_at = time.monotonic() + seconds
    n = 0

    async def client(k: int) -> None:
        nonlocal n
        while time.monotonic() < stop_at:
            n += 1
            await load.one(SIGNALS[n % 3], (n + k) % 2 == 0)
            if load.tally.refused + load.tally.unavailable:
                await asyncio.sleep(0.05)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    await load.close()
    return load.tally.ok / wall, load.tally


async def phase(
    load: Load, pid: int, name: str, rate: float, seconds: float, every: float, t0: float
) -> dict:
    """Run one rate, printing a line every ``every`` seconds; the phase's totals and peak memory."""
    total = Tally()
    peak = [0, 0]
    samples: list[tuple[float, int]] = []
    left = seconds
    while left > 0:
        span = min(every, left)
        load.tally = Tally()
        sampler = asyncio.create_task(_sample(pid, peak, samples, t0))
        await load.run(rate, span)
        sampler.cancel()
        left -= span
        t = load.tally
        total.add(t)
        rss, anon = memory(pid)
        print(
            f"{time.perf_counter() - t0:7.0f} s  {name:9s} offered {t.sent / span:6.1f}/s  accepted "
            f"{t.ok / span:6.1f}/s  429 {t.refused / span:6.1f}/s  503 {t.unavailable / span:5.1f}/s  "
            f"other {t.other}  not sent {t.skipped}  RSS {rss / MIB:5.0f} MiB  anon {anon / MIB:5.0f} MiB  "
            f"(peak {peak[0] / MIB:.0f} / {peak[1] / MIB:.0f})",
            flush=True,
        )
    return {"tally": total, "peak_rss": peak[0], "peak_anon": peak[1], "samples": samples}


async def _sample(pid: int, peak: list[int], samples: list[tuple[float, int]], t0: float) -> None:
    while True:
        rss, anon = memory(pid)
        peak[0], peak[1] = max(peak[0], rss), max(peak[1], anon)
        samples.append((time.perf_counter() - t0, anon))
        await asyncio.sleep(0.2)


def trend_mib_per_hour(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of anonymous memory over the second half of the run."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3:
        return 0.0
    xs, ys = [s[0] for s in half], [s[1] / MIB for s in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 3600) if den else 0.0


async def main_async(args: argparse.Namespace, data: Path) -> int:
    ns = argparse.Namespace(kafka=False, brokers="")
    proc, grpc_port, http_port = ingest.start_collector(data, ns)
    try:
        rss, anon = memory(proc.pid)
        print(
            f"collector pid {proc.pid}: idle RSS {rss / MIB:.0f} MiB, anonymous {anon / MIB:.0f} MiB",
            flush=True,
        )
        warmup = Tally()
        rate = args.rate
        if not rate:
            rate, warmup = await calibrate(grpc_port, http_port, args.calibrate_s, args.clients)
        print(
            f"sustainable rate: {rate:.1f} requests/s{'' if args.rate else ' (measured, closed loop)'}",
            flush=True,
        )
        load = Load(grpc_port, http_port, args.max_inflight)
        t0 = time.perf_counter()
        results = []
        if args.overload:
            plan = [("calm", 0.5, args.calm_s), ("5x", 5.0, args.overload_s), ("recovered", 0.5, args.calm_s)]
        else:
            plan = [("soak", args.fraction, args.minutes * 60)]
        for name, factor, seconds in plan:
            results.append((name, await phase(load, proc.pid, name, rate * factor, seconds, args.every, t0)))
        await load.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(300)
    if code != 0:
        print(f"collector exited with {code}:\n" + (data / "collector.log").read_text()[-3000:])
        return 1
    acked = Tally()
    acked.add(warmup)  # what the calibration got acknowledged is stored too
    for _name, r in results:
        acked.add(r["tally"])
    stored = ingest.stored_rows(data)
    lost = {s: acked.items[s] - stored.get(s, 0) for s in SIGNALS}
    for name, r in results:
        t = r["tally"]
        lat = sorted(t.latencies) or [0.0]
        print(
            f"{name:9s}: sent {t.sent}, accepted {t.ok}, 429 {t.refused}, 503 {t.unavailable}, other {t.other}, "
            f"not sent {t.skipped}; peak RSS {r['peak_rss'] / MIB:.0f} MiB, peak anonymous "
            f"{r['peak_anon'] / MIB:.0f} MiB; p50 latency {statistics.median(lat) * 1000:.0f} ms"
        )
    if not args.overload:
        print(
            f"anonymous memory trend over the second half: {trend_mib_per_hour(results[0][1]['samples']):+.1f} MiB/hour"
        )
    else:
        last = results[-1][1]["tally"]
        print(f"recovery: the last calm phase accepted {last.ok} of {last.sent} requests sent")
    print(f"durable check: acknowledged {acked.items}, stored {stored}")
    return 1 if any(lost.values()) else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="soak duration")
    ap.add_argument(
        "--fraction", type=float, default=0.5, help="soak rate, as a fraction of the sustainable rate"
    )
    ap.add_argument("--rate", type=float, default=0.0, help="sustainable requests/s (default: measure it)")
    ap.add_argument("--calibrate-s", type=float, default=20.0, help="closed-loop run that measures it")
    ap.add_argument("--clients", type=int, default=16, help="closed-loop clients while calibrating")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between report lines")
    ap.add_argument("--max-inflight", type=int, default=256, help="the load generator's own bound")
    ap.add_argument("--overload", action="store_true", help="calm, five times the rate, calm again")
    ap.add_argument("--calm-s", type=float, default=30.0)
    ap.add_argument("--overload-s", type=float, default=60.0)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="forewarn-soak-"))
    try:
        sys.exit(asyncio.run(main_async(args, data)))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
