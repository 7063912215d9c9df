"""The collector as users run it: ``forewarn collector`` subprocesses on a data directory (restart,
SIGTERM drain, ``forewarn query`` while it runs) and storage going away in the middle of a load."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
from collector_support import RunningCollector
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from forewarn.net import free_port

FOREWARN = [sys.executable, "-m", "forewarn.cli"]
GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def span_batch(prefix: str, n: int) -> tuple[bytes, set[str]]:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "load"
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    ids = set()
    for _ in range(n):
        sid = os.urandom(8)
        ids.add(sid.hex())
        sp = spans.add(trace_id=os.urandom(16), span_id=sid, name=prefix, kind=2)
        sp.start_time_unix_nano, sp.end_time_unix_nano = now, now + 1000
        sp.attributes.add(key="k").value.int_value = 1
    return req.SerializeToString(), ids


class Collector:
    """``forewarn collector`` in a subprocess on a data directory."""

    def __init__(self, tmp: Path, **env: str):
        self.dsn = f"chdb://{tmp / 'chdb'}"
        self.grpc_port, self.http_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "FOREWARN_DATA_DIR": str(tmp),
            "FOREWARN_COLLECTOR__HOST": "127.0.0.1",
            **env,
        }
        self.log = tmp / "collector.log"
        cmd = [
            *FOREWARN,
            "collector",
            "--storage",
            self.dsn,
            "--grpc-port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
        ]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("collector did not become ready: " + self.log.read_text())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def received(self, signal: str) -> float:
        """Items received so far, from the collector's own /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for fam in text_string_to_metric_families(httpx.get(f"{self.url}/metrics", timeout=10).text):
            if fam.name == "forewarn_collector_received_items":
                total += sum(
                    x.value for x in fam.samples if x.name.endswith("_total") and x.labels["signal"] == signal
                )
        return total

    def query(self, sql: str) -> list[dict]:
        out = subprocess.run(
            [*FOREWARN, "query", "--storage", self.dsn, "--format", "json", sql],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_restart_on_existing_data_dir_and_query_while_running(tmp_path):
    c = Collector(tmp_path)
    body, ids1 = span_batch("first", 50)
    assert (
        httpx.post(
            f"{c.url}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        ).status_code
        == 200
    )
    assert c.stop() == 0
    assert "collector stopped" in c.log.read_text()

    c = Collector(tmp_path)  # same directory: migrations are idempotent, data is still there
    body, ids2 = span_batch("second", 30)
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        assert ch.unary_unary(GRPC_TRACES)(body) == b""
    # forewarn query on the same embedded store while the collector holds it
    got = c.query("SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName ORDER BY SpanName")
    assert got == [{"SpanName": "first", "n": 50}, {"SpanName": "second", "n": 30}]
    assert c.stop() == 0
    # released: the directory opens directly again
    rows = c.query("SELECT SpanId FROM otel_traces")
    assert {r["SpanId"] for r in rows} == ids1 | ids2


def test_sigterm_drains_in_flight_requests(tmp_path):
    # a long linger keeps requests queued when SIGTERM arrives; all of them must still be committed
    c = Collector(tmp_path, FOREWARN_COLLECTOR__BATCH_LINGER_MS="3000")
    batches = [span_batch(f"drain{i}", 20) for i in range(8)]

    def send(body: bytes) -> int:
        return httpx.post(
            f"{c.url}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}, timeout=60
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(send, b) for b, _ in batches]
        # every request has been received (and sits in the queue, lingering) before SIGTERM
        deadline = time.monotonic() + 30
        while c.received("traces") < 8 * 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        c.proc.send_signal(signal.SIGTERM)
        codes = [f.result(60) for f in futures]
    assert c.proc.wait(60) == 0
    assert codes == [200] * len(batches)
    stored = {r["SpanId"] for r in c.query("SELECT SpanId FROM otel_traces")}
    assert stored == set().union(*(ids for _, ids in batches))


def test_storage_going_away_mid_load_loses_nothing_acknowledged(settings, store):
    """Clients send unique spans and retry on retryable statuses, as OTLP exporters do. Mid-load the
    table disappears (renamed away) and comes back; everything acknowledged is stored exactly once."""
    settings.collector.retry_after_s = 1
    acked: set[str] = set()
    refusals: list[int | str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 240  # a liveness bound: a loaded machine is slow, not lossy

    with RunningCollector(settings) as svc:

        def http_client(k: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30) as http:
                for i in range(25):
                    body, ids = span_batch(f"h{k}-{i}", 40)
                    while time.monotonic() < stop_at:
                        r = http.post(
                            "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
                        )
                        if r.status_code == 200:
                            with lock:
                                acked.update(ids)
                            break
                        assert r.status_code in (429, 503), r.text
                        assert int(r.headers["retry-after"]) >= 1
                        refusals.append(r.status_code)
                        time.sleep(0.2)

        def grpc_client(k: int) -> None:
            with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
                call = ch.unary_unary(GRPC_TRACES)
                for i in range(25):
                    body, ids = span_batch(f"g{k}-{i}", 40)
                    while time.monotonic() < stop_at:
                        try:
                            call(body, timeout=30)
                        except grpc.RpcError as e:
                            assert e.code() in (
                                grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                            )
                            refusals.append(e.code().name)
                            time.sleep(0.2)
                            continue
                        with lock:
                            acked.update(ids)
                        break

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(http_client, k) for k in range(2)] + [
                pool.submit(grpc_client, k) for k in range(2)
            ]
            deadline = time.monotonic() + 30
            while len(acked) < 400 and time.monotonic() < deadline:
                time.sleep(0.02)
            store.command("RENAME TABLE otel_traces TO otel_traces_away")
            deadline = time.monotonic() + 30
            while not refusals and time.monotonic() < deadline:  # the outage reached the clients
                time.sleep(0.05)
            time.sleep(0.5)
            store.command("RENAME TABLE otel_traces_away TO otel_traces")
            for f in futures:
                f.result(300)

    assert refusals, "the outage was not noticed by any client"
    assert len(acked) == 4 * 25 * 40
    rows = store.query("SELECT SpanId, count() FROM otel_traces GROUP BY SpanId").result_rows
    assert {sid for sid, _ in rows} == acked
    assert max(n for _, n in rows) == 1
