"""End-to-end ingest benchmark: concurrent OTLP/gRPC and OTLP/HTTP clients against ``forewarn collector``.

The collector runs as a subprocess on an embedded chDB store, durable (every request is answered
only after its rows are committed). Clients send realistic batches: 512 spans of 10-20 attributes,
metric batches mixing gauges, sums and histograms, log batches of 512 records. Every request carries
a unique resource attribute, so no two inserted blocks are identical (ClickHouse would deduplicate
them) and the rows stored can be checked against the requests acknowledged.

In the same run, a floor: the same payloads decoded (the receiver's upb parse) and inserted with
``insert_requests`` directly, no network, in this process. The ratio end-to-end / floor shows what
the receivers and the group commit cost on top of the conversion itself.

    .venv/bin/python bench/ingest.py [--seconds 8] [--grpc-clients 6] [--http-clients 6]
    .venv/bin/python bench/ingest.py --compare-dedup [--rounds 4]   # re-send dedup off vs on
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal as signals_mod
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from forewarn.net import free_port

SPANS_PER_REQUEST = 512
LOGS_PER_REQUEST = 512
METRICS_PER_REQUEST = 100  # x 5 points each
GRPC_METHOD = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
ITEM = {"traces": "spans", "metrics": "points", "logs": "log records"}


def _attr(rng: random.Random, i: int) -> KeyValue:
    kind = i % 4
    key = f"attr.{i}"
    if kind == 0:
        return KeyValue(key=key, value=AnyValue(string_value=f"value-{rng.randrange(1000)}-xxxxxxxx"))
    if kind == 1:
        return KeyValue(key=key, value=AnyValue(int_value=rng.randrange(1 << 40)))
    if kind == 2:
        return KeyValue(key=key, value=AnyValue(double_value=rng.random() * 1000))
    return KeyValue(key=key, value=AnyValue(bool_value=bool(rng.getrandbits(1))))


def scope_traces(rng: random.Random, now: int) -> bytes:
    ss = trace_pb2.ScopeSpans()
    ss.scope.name, ss.scope.version = "bench.tracer", "1.0"
    for _ in range(SPANS_PER_REQUEST):
        sp = ss.spans.add(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            parent_span_id=rng.randbytes(8),
            name=f"GET /api/v1/items/{rng.randrange(50)}",
            kind=rng.randrange(1, 6),
            start_time_unix_nano=now,
            end_time_unix_nano=now + rng.randrange(1, 10_000_000),
        )
        sp.attributes.extend(_attr(rng, i) for i in range(rng.randrange(10, 21)))
        sp.status.code = rng.choice((0, 0, 0, 1, 2))
    return trace_pb2.ResourceSpans(scope_spans=[ss]).SerializeToString()


def scope_metrics(rng: random.Random, now: int) -> bytes:
    sm = metrics_pb2.ScopeMetrics()
    sm.scope.name = "bench.meter"
    bounds = [5, 10, 25, 50, 100, 250, 500, 1000]
    for i in range(METRICS_PER_REQUEST):
        m = sm.metrics.add(name=f"bench.metric.{i}", unit="ms")
        kind = i % 3
        for j in range(5):
            attrs = [_attr(rng, k) for k in range(3)] + [KeyValue(key="series", value=AnyValue(int_value=j))]
            if kind == 0:
                m.gauge.data_points.add(time_unix_nano=now, as_double=rng.random(), attributes=attrs)
            elif kind == 1:
                m.sum.aggregation_temporality, m.sum.is_monotonic = 2, True
                m.sum.data_points.add(
                    time_unix_nano=now,
                    start_time_unix_nano=now - 10**9,
                    as_int=rng.randrange(10**6),
                    attributes=attrs,
                )
            else:
                m.histogram.aggregation_temporality = 2
                counts = [rng.randrange(100) for _ in range(len(bounds) + 1)]
                m.histogram.data_points.add(
                    time_unix_nano=now,
                    count=sum(counts),
                    sum=rng.random() * 1e4,
                    bucket_counts=counts,
                    explicit_bounds=bounds,
                    attributes=attrs,
                )
    return metrics_pb2.ResourceMetrics(scope_metrics=[sm]).SerializeToString()


def scope_logs(rng: random.Random, now: int) -> bytes:
    sl = logs_pb2.ScopeLogs()
    sl.scope.name = "bench.logger"
    for i in range(LOGS_PER_REQUEST):
        lr = sl.log_records.add(
            time_unix_nano=now + i,
            severity_number=rng.choice((9, 13, 17)),
            severity_text="INFO",
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
        )
        lr.body.string_value = f"request {rng.randrange(10**9)} handled in {rng.randrange(1000)} ms by worker"
        lr.attributes.extend(_attr(rng, k) for k in range(rng.randrange(5, 11)))
    return logs_pb2.ResourceLogs(scope_logs=[sl]).SerializeToString()


SCOPES = {"traces": scope_traces, "metrics": scope_metrics, "logs": scope_logs}
ITEMS_PER_REQUEST = {
    "traces": SPANS_PER_REQUEST,
    "metrics": METRICS_PER_REQUEST * 5,
    "logs": LOGS_PER_REQUEST,
}


class Payloads:
    """Unique requests, cheaply: a few pre-serialized item bodies, each request with its own resource.

    Concatenating two serialized messages of one type merges them, so ``Resource*`` bytes with the
    resource + the pre-built scope bytes make one resource entry; field 1 wraps it in the request.
    """

    def __init__(self, signal: str, variants: int = 8, seed: int = 7):
        rng = random.Random(seed)
        now = time.time_ns()
        self.signal = signal
        self.scopes = [SCOPES[signal](rng, now) for _ in range(variants)]
        self.n = 0

    def next(self) -> bytes:
        self.n += 1
        res = Resource()
        res.attributes.add(key="service.name").value.string_value = f"bench-{self.signal}-{self.n % 7}"
        res.attributes.add(key="bench.request").value.int_value = self.n
        res.attributes.add(key="host.name").value.string_value = socket.gethostname()
        head = b"\x0a" + _VarintBytes(res.ByteSize()) + res.SerializeToString()  # Resource* field 1
        body = head + self.scopes[self.n % len(self.scopes)]
        return b"\x0a" + _VarintBytes(len(body)) + body


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    signal: str
    requests: int = 0
    items: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    avg_batch: float = 1.0  # client requests per insert, from the collector's own histogram

    def line(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        per_cpu = self.items / self.cpu_s if self.cpu_s else 0
        return (
            f"{self.signal:8s} end-to-end: {self.items / self.wall_s:>10,.0f} {ITEM[self.signal]}/s "
            f"({per_cpu:,.0f} per collector CPU-second), {self.requests} requests, {self.refused} retried, "
            f"export latency p50 {p50:.1f} ms p99 {p99:.1f} ms"
        )


async def drive(signal: str, pid: int, grpc_port: int, http_port: int, args: argparse.Namespace) -> Phase:
    import grpc
    import httpx

    payloads = Payloads(signal)
    phase = Phase(signal)
    per_request = ITEMS_PER_REQUEST[signal]
    stop_at = time.monotonic() + args.seconds

    async def grpc_client(channel: grpc.aio.Channel) -> None:
        call = channel.unary_unary(GRPC_METHOD[signal])
        while time.monotonic() < stop_at:
            body = payloads.next()
            t0 = time.perf_counter()
            try:
                await call(body, timeout=60)
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    raise
                phase.refused += 1
                await asyncio.sleep(0.05)
                continue
            phase.latencies.append(time.perf_counter() - t0)
            phase.requests += 1
            phase.items += per_request

    async def http_client(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            body = payloads.next()
            t0 = time.perf_counter()
            r = await client.post(
                f"/v1/{signal}", content=body, headers={"Content-Type": "application/x-protobuf"}
            )
            if r.status_code in (429, 503):
                phase.refused += 1
                await asyncio.sleep(0.05)
                continue
            r.raise_for_status()
            phase.latencies.append(time.perf_counter() - t0)
            phase.requests += 1
            phase.items += per_request

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client,
    ):
        await asyncio.gather(
            *(grpc_client(channel) for _ in range(args.grpc_clients)),
            *(http_client(client) for _ in range(args.http_clients)),
        )
    phase.wall_s = time.perf_counter() - t0
    phase.cpu_s = cpu_seconds(pid) - cpu0
    phase.avg_batch = scrape_avg_batch(http_port, signal)
    return phase


def scrape_avg_batch(http_port: int, signal: str) -> float:
    """Average requests per group-commit batch, read from the collector's ``/metrics``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
    total = count = 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name == "forewarn_collector_batch_requests":
            for sample in fam.samples:
                if sample.labels.get("signal") == signal:
                    if sample.name.endswith("_sum"):
                        total = sample.value
                    elif sample.name.endswith("_count"):
                        count = sample.value
    return total / count if count else 1.0


def start_collector(
    data: Path, args: argparse.Namespace, dedup_window_s: float | None = None
) -> tuple[subprocess.Popen, int, int]:
    grpc_port, http_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "forewarn.cli", "collector", "--storage", f"chdb://{data / 'chdb'}"]
    cmd += ["--grpc-port", str(grpc_port), "--http-port", str(http_port), "--host", "127.0.0.1"]
    if args.kafka:  # hook for the Kafka path: the same load through the Kafka exporter
        cmd += ["--exporter", "kafka", "--brokers", args.brokers]
    env = {**os.environ, "FOREWARN_DATA_DIR": str(data), "FOREWARN_LOG_LEVEL": "WARNING"}
    if dedup_window_s is not None:
        env["FOREWARN_COLLECTOR__DEDUP_WINDOW_S"] = str(dedup_window_s)
    proc = subprocess.Popen(cmd, env=env, stderr=(data / "collector.log").open("wb"))
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("collector exited:\n" + (data / "collector.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                return proc, grpc_port, http_port
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("collector did not become ready")


def stored_rows(data: Path) -> dict[str, int]:
    sql = (
        "SELECT 'traces', count() FROM otel_traces UNION ALL SELECT 'logs', count() FROM otel_logs "
        "UNION ALL SELECT 'metrics', (SELECT count() FROM otel_metrics_gauge) + "
        "(SELECT count() FROM otel_metrics_sum) + (SELECT count() FROM otel_metrics_histogram)"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "forewarn.cli",
            "query",
            "--storage",
            f"chdb://{data / 'chdb'}",
            "--format",
            "json",
            sql,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FOREWARN_LOG_LEVEL": "WARNING"},
    )
    return {r["'traces'"]: r["count()"] for r in map(json.loads, out.stdout.splitlines())}


def floor(
    signals: list[str], phases: dict[str, Phase], data: Path, args: argparse.Namespace
) -> dict[str, tuple[float, float, int]]:
    """Decode (as the receiver does) + insert_requests directly, in batches of the size the collector
    formed on average, single-threaded, into a fresh store in this process.
    Returns (items per second, items per CPU-second of this process, batch size) per signal."""
    from forewarn.collector.convert import insert_requests
    from forewarn.collector.otlp import decode_protobuf

    from forewarn.config import load_settings
    from forewarn.storage import open_storage

    settings = load_settings(overrides={"storage": {"dsn": f"chdb://{data / 'floor'}", "database": "floor"}})
    client = open_storage(settings)
    rates = {}
    for signal in signals:
        payloads = Payloads(signal, seed=11)
        batch = args.floor_batch or max(1, round(phases[signal].avg_batch))
        items = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < args.seconds / 2:
            group = [decode_protobuf(signal, payloads.next()).payload for _ in range(batch)]
            insert_requests(client, signal, group, database="floor")
            items += batch * ITEMS_PER_REQUEST[signal]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rates[signal] = (items / wall, items / cpu if cpu else 0.0, batch)
    client.close()
    return rates


def end_to_end(
    signals: list[str], data: Path, args: argparse.Namespace, dedup_window_s: float | None
) -> dict[str, Phase]:
    """Load each signal in turn through one collector process, then check every acknowledged item
    is stored exactly once."""
    proc, grpc_port, http_port = start_collector(data, args, dedup_window_s)
    phases = {}
    try:
        for s in signals:
            phases[s] = asyncio.run(drive(s, proc.pid, grpc_port, http_port, args))
            print(phases[s].line(), flush=True)
    finally:
        proc.send_signal(signals_mod.SIGTERM)
        code = proc.wait(120)
    if code != 0:
        sys.exit(f"collector exited with {code}:\n" + (data / "collector.log").read_text())
    stored = stored_rows(data)
    for s in signals:
        want = phases[s].items
        print(f"{s:8s} durable check: {stored.get(s, 0)} rows stored for {want} acknowledged", flush=True)
        if stored.get(s, 0) != want:
            sys.exit(f"{s}: acknowledged {want} but stored {stored.get(s, 0)}")
    return phases


def compare_dedup(signals: list[str], args: argparse.Namespace) -> None:
    """Re-send deduplication off (window 0) and on (the default window), alternately, each in a
    fresh store; prints the best of each and the ratio on / off (wall and per collector CPU-second)."""
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {"off": {}, "on": {}}
    for round_ in range(args.rounds):
        for mode, window in (
            (("off", 0.0), ("on", 3600.0)) if round_ % 2 == 0 else (("on", 3600.0), ("off", 0.0))
        ):
            print(f"-- round {round_ + 1}, re-send dedup {mode}", flush=True)
            data = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
            try:
                for s, ph in end_to_end(signals, data, args, window).items():
                    per_cpu = ph.items / ph.cpu_s if ph.cpu_s else 0.0
                    runs[mode].setdefault(s, []).append((ph.items / ph.wall_s, per_cpu))
            finally:
                shutil.rmtree(data, ignore_errors=True)
    if args.floor_batch >= 0:
        data = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
        try:
            floor_dedup(signals, data, args, args.floor_batch or 16)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    for s in signals if args.rounds else ():
        off_wall, off_cpu = (max(x[k] for x in runs["off"][s]) for k in (0, 1))
        on_wall, on_cpu = (max(x[k] for x in runs["on"][s]) for k in (0, 1))
        print(
            f"{s:8s} dedup off best {off_wall:,.0f} {ITEM[s]}/s ({off_cpu:,.0f} per CPU-second), "
            f"on best {on_wall:,.0f}/s ({on_cpu:,.0f} per CPU-second); ratio on / off = "
            f"{on_wall / off_wall:.2f} wall, {on_cpu / off_cpu if off_cpu else 0:.2f} per CPU-second",
            flush=True,
        )


def floor_dedup(signals: list[str], data: Path, args: argparse.Namespace, batch: int) -> None:
    """In this process, the insert path alone: ``insert_requests`` (dedup off) and ``ResendDedup.insert``
    (lookup + plan + marked insert; on), alternating batch by batch on fresh payloads, so both see
    the same load; CPU of this process (the engine's threads included) per item, and the ratio."""
    from forewarn.collector.convert import insert_requests
    from forewarn.collector.otlp import decode_protobuf
    from forewarn.collector.resend_dedup import ResendDedup

    from forewarn.config import load_settings
    from forewarn.storage import open_storage

    settings = load_settings(overrides={"storage": {"dsn": f"chdb://{data / 'floor'}", "database": "floor"}})
    client = open_storage(settings)
    dedup = ResendDedup("floor", 3600, sole_writer=True)  # as the collector on an embedded store
    dedup.load(client)
    for signal in signals:
        payloads = Payloads(signal, seed=13)
        spent = {"off": [0.0, 0.0, 0], "on": [0.0, 0.0, 0]}  # wall, cpu, items
        t_end = time.perf_counter() + args.seconds
        n = 0
        while time.perf_counter() < t_end or n < 4:
            for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):
                group = [decode_protobuf(signal, payloads.next()).payload for _ in range(batch)]
                t0, c0 = time.perf_counter(), time.process_time()
                if mode == "off":
                    insert_requests(client, signal, group, database="floor")
                else:
                    dedup.insert(client, signal, group)
                spent[mode][0] += time.perf_counter() - t0
                spent[mode][1] += time.process_time() - c0
                spent[mode][2] += batch * ITEMS_PER_REQUEST[signal]
            n += 1
        (w0, c0, i0), (w1, c1, i1) = spent["off"], spent["on"]
        print(
            f"{signal:8s} insert path, {batch} requests per insert, {n} inserts each: dedup off "
            f"{i0 / c0:,.0f} {ITEM[signal]} per CPU-second ({i0 / w0:,.0f}/s), on {i1 / c1:,.0f} per "
            f"CPU-second ({i1 / w1:,.0f}/s); ratio on / off = {(i1 / c1) / (i0 / c0):.2f} per CPU-second, "
            f"{(i1 / w1) / (i0 / w0):.2f} wall",
            flush=True,
        )
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="load duration per signal")
    ap.add_argument("--grpc-clients", type=int, default=16)
    ap.add_argument("--http-clients", type=int, default=16)
    ap.add_argument("--signals", default="traces,metrics,logs")
    ap.add_argument(
        "--floor-batch",
        type=int,
        default=0,
        help="requests per direct insert (default: the collector's average)",
    )
    ap.add_argument("--kafka", action="store_true", help="send through the Kafka exporter (needs --brokers)")
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument(
        "--dedup-window",
        type=float,
        default=None,
        help="collector.dedup_window_s of the collector (default: its configuration; 0 = off)",
    )
    ap.add_argument(
        "--compare-dedup",
        action="store_true",
        help="the cost of exactly-once: re-send dedup off and on, end to end alternately (--rounds), "
        "then the insert path alone in this process, batch by batch (--floor-batch, default 16)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="with --compare-dedup: end-to-end runs, half off, half on (0: none)",
    )
    args = ap.parse_args()
    if args.kafka:  # publish through Kafka, then 1 and 2 ingesters, delay to queryable: bench/ingest_kafka.py
        import ingest_kafka

        return ingest_kafka.main(args)
    signals = [s for s in args.signals.split(",") if s]
    if args.compare_dedup:
        return compare_dedup(signals, args)

    data = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
    try:
        phases = end_to_end(signals, data, args, args.dedup_window)
        rates = floor(signals, phases, data, args)
        for s in signals:
            ph = phases[s]
            wall, cpu, batch = rates[s]
            e2e, e2e_cpu = ph.items / ph.wall_s, ph.items / ph.cpu_s if ph.cpu_s else 0.0
            print(
                f"{s:8s} floor (decode + insert_requests direct, {batch} requests per insert like the "
                f"collector's average {ph.avg_batch:.1f}): {wall:,.0f} {ITEM[s]}/s ({cpu:,.0f} per CPU-second); "
                f"ratio end-to-end / floor = {e2e / wall:.2f} (per CPU-second {e2e_cpu / cpu if cpu else 0:.2f})",
                flush=True,
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
