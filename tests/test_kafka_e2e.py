"""End to end through real processes: OTel SDK -> forewarn collector (Kafka exporter) -> Tansu ->
forewarn ingest -> chDB, including kill -9 of the collector and the ingester, a paused broker and a
storage outage during a steady load from retrying clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import requests
from collector_support import RunningCollector
from kafka_broker import Broker, broker, read_topic  # noqa: F401 - fixture
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_kafka_wire import logs_request, metrics_request

from forewarn.net import free_port

FOREWARN = str(Path(sys.executable).parent / "forewarn")


class Proc:
    """A forewarn command in its own process, restartable with the same arguments."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]):
        self.args, self.log, self.env = args, log, env
        self.p: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.p = subprocess.Popen(
                [FOREWARN, *self.args], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    def kill9(self) -> None:
        assert self.p is not None
        self.p.kill()
        self.p.wait(10)

    def stop(self) -> int:
        assert self.p is not None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        return self.p.returncode


def env_for(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FOREWARN_DATA_DIR": str(tmp / "data"),
        "FOREWARN_KAFKA__PARTITIONS": "4",
        "FOREWARN_KAFKA__SESSION_TIMEOUT_MS": "2000",
        "FOREWARN_KAFKA__BATCH_LINGER_MS": "50",
        "FOREWARN_KAFKA__RETRY_MAX_BACKOFF_S": "1",
        "FOREWARN_KAFKA__DELIVERY_TIMEOUT_S": "3",
    }


def start_collector(b: Broker, tmp: Path, env: dict[str, str]) -> tuple[Proc, int]:
    port = free_port()
    args = ["collector", "--exporter", "kafka", "--brokers", b.address, "--host", "127.0.0.1"]
    args += ["--http-port", str(port), "--grpc-port", str(free_port())]
    proc = Proc(args, tmp / "collector.log", env)
    wait_ready(f"http://127.0.0.1:{port}/readyz", tmp / "collector.log")
    return proc, port


def start_ingester(b: Broker, tmp: Path, env: dict[str, str], dsn: str, *extra: str) -> Proc:
    return Proc(["ingest", "--brokers", b.address, "--storage", dsn, *extra], tmp / "ingest.log", env)


def wait_ready(url: str, log: Path, timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready; log:\n{log.read_text()[-3000:]}")


def query(dsn: str, sql: str, fmt: str = "json") -> list[dict[str, Any]]:
    """Through `forewarn query`, which reaches the ingester's embedded store via its gateway."""
    out = subprocess.run(
        [FOREWARN, "query", "--storage", dsn, "--format", fmt, sql], capture_output=True, timeout=60
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode()[-2000:])
    return [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]


def wait_rows(dsn: str, sql: str, want: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    got = -1
    while time.monotonic() < deadline:
        try:
            got = int(query(dsn, sql)[0]["n"])
        except (RuntimeError, IndexError):
            got = -1
        if got >= want:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{sql}: {got} rows, wanted {want}")


def sdk_spans(n: int, start: int = 0) -> list[Any]:
    """Real SDK spans, each with a unique `uid` attribute, collected in memory for explicit export."""
    mem = InMemorySpanExporter()
    tp = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    )
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tracer = tp.get_tracer("e2e", "1.2.3")
    for i in range(start, start + n):
        with tracer.start_as_current_span("parent") as parent:
            parent.set_attribute("uid", i)
            parent.add_event("boom", {"k": "v", "n": 3})
            with tracer.start_as_current_span("child", attributes={"uid": -i - 1, "list": [1, 2]}):
                pass
    return list(mem.get_finished_spans())


def uids_in_topic(address: str, uids: dict[int, int]) -> dict[int, list[tuple[int, int]]]:
    """Where the given parent uids sit in the spans topic: (partition, offset) per copy, telling a
    duplicate the broker holds from one the ingester made."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    where: dict[int, list[tuple[int, int]]] = {u: [] for u in uids}
    for msg in read_topic(address, "otlp_spans", 4, 1 << 30, timeout_s=10):
        req = ExportTraceServiceRequest.FromString(msg.value())
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    for kv in sp.attributes:
                        if kv.key == "uid" and kv.value.int_value in where:
                            where[kv.value.int_value].append((msg.partition(), msg.offset()))
    return where


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS))


def test_kafka_path_stores_exactly_what_the_direct_path_stores(settings, store, broker, tmp_path) -> None:  # noqa: F811
    """Field fidelity: identical requests through Kafka and straight into ClickHouse give identical rows."""
    env = env_for(tmp_path)
    dsn = f"chdb://{tmp_path / 'kstore'}"
    metrics_port = free_port()
    ingester = start_ingester(broker, tmp_path, env, dsn, "--metrics-port", str(metrics_port))
    collector, port = start_collector(broker, tmp_path, env)
    spans = sdk_spans(5)
    direct = settings.model_copy(deep=True)
    try:
        with RunningCollector(direct) as svc:
            for url in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{svc.http_port}"):
                assert OTLPSpanExporter(endpoint=f"{url}/v1/traces").export(spans) == SpanExportResult.SUCCESS
                for path, req in (("/v1/metrics", metrics_request()), ("/v1/logs", logs_request())):
                    r = httpx.post(
                        url + path,
                        content=req.SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                    assert r.status_code == 200, r.text
        for table, n in (("otel_traces", 10), ("otel_metrics_gauge", 3), ("otel_logs", 1)):
            sql = f"SELECT * FROM otel.{table}"
            wait_rows(dsn, f"SELECT count() AS n FROM otel.{table}", n)
            via_kafka = comparable(query(dsn, sql))
            raw = store.raw_query(
                f"SELECT * FROM {table}",
                fmt="JSONEachRow",
                settings={"output_format_json_quote_64bit_integers": 0},
            )
            direct_rows = comparable([orjson.loads(x) for x in raw.splitlines() if x.strip()])
            assert len(via_kafka) == n and via_kafka == direct_rows, table
        for _ in range(50):  # the lag gauges are refreshed every 2 s
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            if "forewarn_ingest_consumer_lag{" in metrics:
                break
            time.sleep(0.2)
        assert 'forewarn_ingest_rows_inserted_total{table="otel_traces"} 10.0' in metrics
        assert "forewarn_ingest_consumer_lag{" in metrics
    finally:
        collector.stop()
        assert ingester.stop() == 0


class CountingSession(requests.Session):
    """Counts the HTTP sends the SDK exporter makes, its own internal retries included."""

    sends = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.sends += 1
        return super().request(*args, **kwargs)


class RetryingClient(threading.Thread):
    """Exports batches of unique spans with the real SDK exporter and retries each batch until the
    collector acknowledges it, recording which uids were acknowledged and how many HTTP sends each
    batch took. A batch sent more than once may have been published more than once (a send whose
    answer was lost when the collector was killed after the broker's ack); the ingester's content
    deduplication must still store it once."""

    def __init__(self, port: int, first_uid: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.session = CountingSession()
        self.exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=4, session=self.session
        )
        self.next_uid, self.stop_event = first_uid, stop
        self.acked: set[int] = set()
        self.resent: dict[int, int] = {}  # uid -> HTTP sends, for batches sent more than once

    def run(self) -> None:
        while not self.stop_event.is_set():
            spans = sdk_spans(5, self.next_uid)
            uids = set(range(self.next_uid, self.next_uid + 5))
            self.next_uid += 5
            self.session.sends = 0
            while self.exporter.export(spans) != SpanExportResult.SUCCESS:
                time.sleep(0.2)
            self.acked |= uids
            if self.session.sends > 1:
                self.resent.update(dict.fromkeys(uids, self.session.sends))
            time.sleep(0.02)


@pytest.mark.slow  # about 75 s: two rounds of kills under load, a paused broker, a storage outage
def test_crashes_pauses_and_outages_lose_nothing_and_duplicate_nothing(broker, tmp_path) -> None:  # noqa: F811
    env = env_for(tmp_path)
    dsn = f"chdb://{tmp_path / 'kstore'}"
    ingester = start_ingester(broker, tmp_path, env, dsn)
    collector, port = start_collector(broker, tmp_path, env)
    stop = threading.Event()
    clients = [RetryingClient(port, first_uid=k * 1_000_000, stop=stop) for k in range(3)]
    for c in clients:
        c.start()

    def restart_collector() -> None:
        collector.start()
        wait_ready(f"http://127.0.0.1:{port}/readyz", tmp_path / "collector.log")

    events: list[str] = []
    t_start = time.monotonic()

    def event(what: str) -> None:
        events.append(f"{what} @{time.monotonic() - t_start:.0f}s")

    try:
        for round_ in range(2):
            time.sleep(1.5)
            collector.kill9()
            event("kill -9 collector")
            restart_collector()
            time.sleep(1.5)
            ingester.kill9()
            event("kill -9 ingester")
            ingester.start()
            time.sleep(1.5)
            collector.kill9()
            ingester.kill9()
            event("kill -9 both")
            ingester.start()
            restart_collector()
            if round_ == 0:
                time.sleep(1.5)
                broker.pause()
                event("broker SIGSTOP 3 s")
                time.sleep(3)
                broker.resume()
                time.sleep(1)
                wait_rows(dsn, "SELECT count() AS n FROM otel.otel_traces", 1)  # the gateway is up again
                query(dsn, "RENAME TABLE otel.otel_traces TO otel.otel_traces_away")
                event("storage outage 3 s")
                time.sleep(3)
                query(dsn, "RENAME TABLE otel.otel_traces_away TO otel.otel_traces")
        time.sleep(1.5)
    finally:
        stop.set()
        event("load stopped")
        for c in clients:
            c.join(60)
    acked = set().union(*(c.acked for c in clients))
    retried: dict[int, int] = {}
    for c in clients:
        retried.update(c.resent)
    try:
        # every acknowledged span (two rows per uid: parent and child) must arrive
        wait_rows(
            dsn, "SELECT uniqExact(SpanAttributes['uid']) AS n FROM otel.otel_traces", 2 * len(acked), 90
        )
        event("every acknowledged span stored")
        time.sleep(1.5)  # anything still in flight would show up as an extra row now
        rows = query(
            dsn,
            "SELECT toInt64(SpanAttributes['uid']) AS uid, count() AS n FROM otel.otel_traces GROUP BY uid",
        )
    finally:
        collector.stop()
        ingester.stop()
    stored = Counter({r["uid"]: r["n"] for r in rows})
    parents = Counter({u: n for u, n in stored.items() if u >= 0})
    assert set(parents) == acked, (
        f"lost: {sorted(acked - set(parents))[:10]}, unknown: {sorted(set(parents) - acked)[:10]}"
    )
    dups = {u: n for u, n in parents.items() if n != 1}
    in_topic = uids_in_topic(broker.address, dict.fromkeys(retried, 0))
    published_twice = sum(len(where) > 1 for where in in_topic.values()) // 5
    print(
        f"\nevents: {', '.join(events)}\nacknowledged spans: {len(acked)} (x2 rows); batches sent more than "
        f"once: {len(retried) // 5}, of which published more than once (stored once): {published_twice}"
    )
    assert not dups, f"{dups}; in the Kafka log: {uids_in_topic(broker.address, dups)}"
    assert all(stored[-u - 1] == 1 for u in parents)  # the child rows too
    assert len(acked) > 100
