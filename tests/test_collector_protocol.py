"""OTLP/HTTP and OTLP/gRPC protocol behaviour: every status code the spec prescribes, partial
success, OTLP/JSON rules, auth, limits, throttling, and the ops endpoints."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import subprocess
import time
import zlib

import grpc
import httpx
import pytest
import zstandard
from collector_support import ControlledExporter, RunningCollector
from forewarn.collector.exporter import ExportError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}


def traces(n: int = 3, bad: int = 0) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc"
    spans = rs.scope_spans.add().spans
    for i in range(n):
        spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"op{i}", start_time_unix_nano=1)
    for i in range(bad):
        spans.add(trace_id=os.urandom(15), span_id=os.urandom(8), name=f"bad{i}")
    return req.SerializeToString()


@pytest.fixture
def rec(settings):
    exp = ControlledExporter()
    with RunningCollector(settings, exp) as svc:
        yield svc, exp, httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30)


def test_protobuf_success_and_partial_success(rec):
    _, exp, http = rec
    r = http.post("/v1/traces", content=traces(3), headers=PB)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    assert (
        ExportTraceServiceRequest.FromString(exp.batches[-1][1][0])
        .resource_spans[0]
        .scope_spans[0]
        .spans[2]
        .name
        == "op2"
    )

    r = http.post("/v1/traces", content=traces(2, bad=3), headers=PB)
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert r.status_code == 200 and resp.partial_success.rejected_spans == 3
    assert "trace_id must be 16 bytes" in resp.partial_success.error_message
    stored = ExportTraceServiceRequest.FromString(exp.batches[-1][1][0])
    assert [s.name for s in stored.resource_spans[0].scope_spans[0].spans] == ["op0", "op1"]


def test_original_bytes_pass_through_untouched(rec):
    _, exp, http = rec
    body = traces(5)
    assert http.post("/v1/traces", content=body, headers=PB).status_code == 200
    assert exp.batches[-1][1] == [body]


def test_empty_request_is_success_without_export(rec):
    _, exp, http = rec
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        r = http.post(path, content=b"", headers=PB)
        assert r.status_code == 200, path
    r = http.post("/v1/logs", content=b"{}", headers=JS)
    assert r.status_code == 200 and r.json() == {} and r.headers["content-type"] == "application/json"
    assert exp.batches == []


def test_otlp_json_rules(rec):
    _, exp, http = rec
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
                "scope_spans": [  # snake_case accepted too
                    {
                        "scope": {"name": "lib", "futureField": {"x": 1}},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "",
                                "name": "GET /x",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                                "attributes": [{"key": "n", "value": {"intValue": "9007199254740993"}}],
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                    }
                                ],
                                "somethingNew": [1, 2, 3],
                            },
                            {"traceId": "abcd", "spanId": "eee19b7ec3c1b174", "name": "short id"},
                            {
                                "trace_id": "5b8efff798038103d269b633813fc60c",
                                "span_id": "0000000000000001",
                                "name": "named enums",
                                "kind": "SPAN_KIND_CONSUMER",
                                "start_time_unix_nano": 5,
                            },
                        ],
                    }
                ],
            }
        ]
    }
    r = http.post("/v1/traces", content=json.dumps(body), headers=JS)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["partialSuccess"]["rejectedSpans"] in ("1", 1)
    span = (
        ExportTraceServiceRequest.FromString(exp.batches[-1][1][0]).resource_spans[0].scope_spans[0].spans[0]
    )
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174" and span.parent_span_id == b""
    assert span.kind == 2 and span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000 and span.end_time_unix_nano == 1544712661000000000
    assert span.attributes[0].value.int_value == 9007199254740993
    assert span.links[0].span_id.hex() == "b7ad6b7169203331"
    named = (
        ExportTraceServiceRequest.FromString(exp.batches[-1][1][0]).resource_spans[0].scope_spans[0].spans[1]
    )
    assert (named.name, named.kind, named.span_id.hex(), named.start_time_unix_nano) == (
        "named enums",
        5,
        "0000000000000001",
        5,
    )


def test_bad_data_is_400_with_status_body(rec):
    _, _, http = rec
    r = http.post("/v1/traces", content=b"\xff\xff\xff garbage", headers=PB)
    assert r.status_code == 400 and r.headers["content-type"] == "application/x-protobuf"
    st = status_pb2.Status.FromString(r.content)
    assert st.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "protobuf" in st.message
    r = http.post("/v1/metrics", content=b"{not json", headers=JS)
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = http.post(
        "/v1/logs",
        content=b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}',
        headers=JS,
    )
    assert r.status_code == 400 and "hex" in r.json()["message"]
    r = http.post("/v1/logs", content=b"[1, 2]", headers=JS)
    assert r.status_code == 400


def test_unsupported_content_type_and_encoding_are_415(rec):
    _, _, http = rec
    r = http.post("/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "Content-Type" in status_pb2.Status.FromString(r.content).message
    r = http.post("/v1/traces", content=b"x", headers={**PB, "Content-Encoding": "br"})
    assert r.status_code == 415 and r.headers["accept-encoding"] == "gzip, deflate, zstd, identity"


def test_gzip_and_size_limits(settings):
    settings.collector.max_request_bytes = 64 * 1024
    exp = ControlledExporter()
    with RunningCollector(settings, exp) as svc:
        http = httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30)
        body = traces(20)
        r = http.post("/v1/traces", content=gzip.compress(body), headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 200 and exp.batches[-1][1] == [body]
        # over the limit as sent
        r = http.post("/v1/traces", content=os.urandom(70 * 1024), headers=PB)
        assert r.status_code == 413
        # a decompression bomb: 200 KiB on the wire, 64 MiB inflated
        bomb = gzip.compress(b"\0" * (64 << 20))
        assert len(bomb) < 64 * 1024
        r = http.post("/v1/traces", content=bomb, headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in status_pb2.Status.FromString(r.content).message
        r = http.post("/v1/traces", content=b"\x1f\x8b not gzip", headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 400
        # deflate (zlib stream) and zstd, with the same limits
        r = http.post(
            "/v1/traces", content=zlib.compress(body), headers={**PB, "Content-Encoding": "deflate"}
        )
        assert r.status_code == 200 and exp.batches[-1][1] == [body]
        zc = zstandard.ZstdCompressor()
        r = http.post("/v1/traces", content=zc.compress(body), headers={**PB, "Content-Encoding": "zstd"})
        assert r.status_code == 200 and exp.batches[-1][1] == [body]
        zbomb = zc.compress(b"\0" * (64 << 20))
        assert len(zbomb) < 64 * 1024
        r = http.post("/v1/traces", content=zbomb, headers={**PB, "Content-Encoding": "zstd"})
        assert r.status_code == 413
        r = http.post(
            "/v1/traces",
            content=zlib.compress(b"\0" * (8 << 20)),
            headers={**PB, "Content-Encoding": "deflate"},
        )
        assert r.status_code == 413
        r = http.post("/v1/traces", content=b"not zstd", headers={**PB, "Content-Encoding": "zstd"})
        assert r.status_code == 400


def test_methods_paths_and_ops_endpoints(rec):
    _, _, http = rec
    assert http.get("/v1/traces").status_code == 405
    assert http.post("/v1/profiles", content=b"", headers=PB).status_code == 404
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    http.post("/v1/traces", content=traces(4, bad=1), headers=PB)
    text = http.get("/metrics").text
    assert 'forewarn_collector_accepted_items_total{signal="traces"}' in text
    assert 'forewarn_collector_rejected_items_total{reason="invalid",signal="traces"}' in text
    assert "forewarn_collector_export_seconds_bucket" in text and "forewarn_collector_queue_bytes" in text
    assert 'forewarn_collector_requests_total{signal="traces",status="200",transport="http"}' in text


def test_bearer_auth(settings):
    settings.collector.auth_tokens = ["tok-1", "tok-2"]
    with RunningCollector(settings, ControlledExporter()) as svc:
        http = httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30)
        assert http.post("/v1/traces", content=traces(1), headers=PB).status_code == 401
        r = http.post("/v1/traces", content=traces(1), headers={**PB, "Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = http.post("/v1/traces", content=traces(1), headers={**PB, "Authorization": "Bearer tok-2"})
        assert r.status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            with pytest.raises(grpc.RpcError) as e:
                call(traces(1))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert call(traces(1), metadata=[("authorization", "Bearer tok-1")]) == b""


def _retry_info(err: grpc.RpcError) -> error_details_pb2.RetryInfo:
    raw = dict(err.trailing_metadata())["grpc-status-details-bin"]
    info = error_details_pb2.RetryInfo()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
    return info


def test_storage_down_is_503_and_unavailable_with_retry_info(rec):
    svc, exp, http = rec
    exp.down = True
    exp.retry_after_s = 5  # the breaker holds long enough to observe it, however loaded the machine
    r = http.post("/v1/traces", content=traces(2), headers=PB)
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert http.get("/readyz").status_code == 503  # the breaker holds
    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        req = ExportLogsServiceRequest()
        req.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "hi"
        with pytest.raises(grpc.RpcError) as e:
            call(req.SerializeToString())
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _retry_info(e.value).retry_delay.seconds >= 1
        exp.down = False
        deadline = time.monotonic() + 20
        while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (
            ExportLogsServiceResponse.FromString(call(req.SerializeToString())) == ExportLogsServiceResponse()
        )


def test_full_queue_is_429_and_resource_exhausted(settings):
    settings.collector.max_queue_bytes = 4096
    exp = ControlledExporter()
    with RunningCollector(settings, exp) as svc:
        exp.gate.clear()  # exports stall: the first request holds the queue
        body = traces(60)
        assert len(body) > 2048
        with httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30) as http:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                first = pool.submit(http.post, "/v1/traces", content=body, headers=PB)
                deadline = time.monotonic() + 10
                while svc.pipeline.queued_requests == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                r = httpx.post(f"http://127.0.0.1:{svc.http_port}/v1/traces", content=body, headers=PB)
                assert r.status_code == 429 and r.headers["retry-after"]
                with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
                    call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
                    with pytest.raises(grpc.RpcError) as e:
                        call(body)
                    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert _retry_info(e.value).retry_delay.seconds >= 1
                exp.gate.set()
                assert first.result(30).status_code == 200
        assert len(exp.batches) == 1


def test_grpc_invalid_argument_gzip_and_partial_success(rec):
    svc, _, _ = rec
    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\xff\xff\xff")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        resp = ExportTraceServiceResponse.FromString(
            call(traces(2, bad=1), compression=grpc.Compression.Gzip)
        )
        assert resp.partial_success.rejected_spans == 1
        mcall = ch.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        req = ExportMetricsServiceRequest()
        metrics = req.resource_metrics.add().scope_metrics.add().metrics
        metrics.add(name="nodata")
        g = metrics.add(name="g").gauge.data_points.add(as_double=1.5, time_unix_nano=5)
        assert g.as_double == 1.5
        resp = ExportMetricsServiceResponse.FromString(mcall(req.SerializeToString()))
        assert (
            resp.partial_success.rejected_data_points == 1 and "nodata" in resp.partial_success.error_message
        )


def test_separate_metrics_port(settings):
    settings.collector.metrics_port = 0  # its own ephemeral port
    with RunningCollector(settings, ControlledExporter()) as svc:
        assert svc.metrics_port not in (0, svc.http_port)
        ops = f"http://127.0.0.1:{svc.metrics_port}"
        assert httpx.get(f"{ops}/readyz").status_code == 200
        assert "forewarn_collector_queue_bytes" in httpx.get(f"{ops}/metrics").text
        assert httpx.get(f"http://127.0.0.1:{svc.http_port}/metrics").status_code == 404
        r = httpx.post(f"http://127.0.0.1:{svc.http_port}/v1/traces", content=traces(1), headers=PB)
        assert r.status_code == 200


def test_all_zero_ids_are_invalid(rec):
    _, exp, http = rec
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=bytes(16), span_id=os.urandom(8), name="zero trace")
    spans.add(trace_id=os.urandom(16), span_id=bytes(8), name="zero span")
    spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="fine")
    resp = ExportTraceServiceResponse.FromString(
        http.post("/v1/traces", content=req.SerializeToString(), headers=PB).content
    )
    assert resp.partial_success.rejected_spans == 2
    assert resp.partial_success.error_message == 'span "zero trace": trace_id is all zeroes'
    stored = ExportTraceServiceRequest.FromString(exp.batches[-1][1][0])
    assert [s.name for s in stored.resource_spans[0].scope_spans[0].spans] == ["fine"]


def test_grpc_limit_applies_after_decompression(settings):
    settings.collector.max_request_bytes = 64 * 1024
    with RunningCollector(settings, ControlledExporter()) as svc:
        req = ExportLogsServiceRequest()
        req.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "0" * (256 * 1024)
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
            with pytest.raises(grpc.RpcError) as e:
                call(req.SerializeToString(), compression=grpc.Compression.Gzip)  # ~1 KiB on the wire
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_as_a_client(rec):
    """curl: another real HTTP client (its own HTTP/1.1 framing, Expect: 100-continue on large bodies)."""
    svc, exp, _ = rec
    url = f"http://127.0.0.1:{svc.http_port}/v1/traces"
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "name": "from curl",
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    out = subprocess.run(
        ["curl", "-sS", "-i", "-H", "Content-Type: application/json", "--data-binary", body, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.startswith("HTTP/1.1 200") and out.rstrip().endswith("{}")
    big = gzip.compress(traces(3000))  # large enough for curl to send Expect: 100-continue
    out = subprocess.run(
        [
            *("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"),
            *("-H", "Content-Type: application/x-protobuf", "-H", "Content-Encoding: gzip"),
            *("--data-binary", "@-", url),
        ],
        input=big,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert out == b"200"
    assert len(exp.batches) == 2


class _BuggyExporter(ControlledExporter):
    """An exporter that fails with a plain exception (a bug, not an ExportError) once."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def export(self, signal: str, payloads: list[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("bug in the exporter")
        await super().export(signal, payloads)


def test_exporter_bug_is_retryable_and_the_collector_keeps_running(settings):
    settings.collector.retry_after_s = 1
    exp = _BuggyExporter()
    with RunningCollector(settings, exp) as svc:
        http = httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30)
        r = http.post("/v1/traces", content=traces(2), headers=PB)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "RuntimeError" in status_pb2.Status.FromString(r.content).message
        deadline = time.monotonic() + 10
        while (r := http.post("/v1/traces", content=traces(2), headers=PB)).status_code != 200:
            assert r.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.2)
        assert len(exp.batches) == 1


class _PickyExporter(ControlledExporter):
    """Refuses, as permanently unreadable, any batch holding a span named "poison"."""

    async def export(self, signal: str, payloads: list[bytes]) -> None:
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        if any(b"poison" in p for p in payloads):
            raise ExportError("the store cannot read this", retryable=False)
        await super().export(signal, payloads)


def test_a_poisonous_request_does_not_take_its_batch_down(settings):
    import concurrent.futures

    exp = _PickyExporter()
    with RunningCollector(settings, exp) as svc:
        url = f"http://127.0.0.1:{svc.http_port}/v1/traces"
        exp.gate.clear()  # hold the first export so the next requests share one batch
        req = ExportTraceServiceRequest()
        req.resource_spans.add().scope_spans.add().spans.add(
            trace_id=os.urandom(16), span_id=os.urandom(8), name="poison"
        )
        bodies = [traces(2), traces(3), req.SerializeToString(), traces(4)]
        with concurrent.futures.ThreadPoolExecutor(1 + len(bodies)) as pool:
            first = pool.submit(httpx.post, url, content=traces(1), headers=PB, timeout=30)
            deadline = time.monotonic() + 10
            while svc.pipeline.queued_requests < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            futures = [pool.submit(httpx.post, url, content=b, headers=PB, timeout=30) for b in bodies]
            while svc.pipeline.queued_requests < 1 + len(bodies) and time.monotonic() < deadline:
                time.sleep(0.01)
            exp.gate.set()
            codes = [f.result().status_code for f in futures]
        assert first.result().status_code == 200
        assert codes == [200, 200, 400, 200]
        stored = sorted(
            len(ExportTraceServiceRequest.FromString(p).resource_spans[0].scope_spans[0].spans)
            for _, ps in exp.batches
            for p in ps
        )
        assert stored == [1, 2, 3, 4]
