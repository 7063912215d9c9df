"""The OTLP/HTTP bad-input probe: one request per case against a running collector, each answered
with the status the OTLP specification (and RFC 9110 where it defers) prescribes, and every 4xx/5xx
with a ``google.rpc.Status`` body encoded like the request (protobuf, or JSON for a JSON request),
routing errors (unknown path, wrong method) included. See ../shared/reference/otlp.md."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field

import httpx
import pytest
from collector_support import ControlledExporter, RunningCollector
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

LIMIT = 256 * 1024  # collector.max_request_bytes of this test
PB, JS = "application/x-protobuf", "application/json"
TRACE_ID, SPAN_ID = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"


def traces_pb(bad_ids: int = 0) -> bytes:
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="ok", start_time_unix_nano=1)
    for _ in range(bad_ids):
        spans.add(trace_id=os.urandom(5), span_id=os.urandom(8), name="bad")
    return req.SerializeToString()


def metrics_pb() -> bytes:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="g")
    m.gauge.data_points.add(as_double=1.5, time_unix_nano=1)
    return req.SerializeToString()


def logs_pb() -> bytes:
    req = ExportLogsServiceRequest()
    req.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1).body.string_value = "hi"
    return req.SerializeToString()


SPANS_JSON = json.dumps(
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "x"}]}]}]}
).encode()
METRICS_JSON = json.dumps(
    {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"name": "g", "gauge": {"dataPoints": [{"asDouble": 1}]}}]}]}
        ]
    }
).encode()
LOGS_JSON = json.dumps(
    {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}]}
).encode()


@dataclass
class Case:
    name: str
    status: int
    body: bytes = b""
    path: str = "/v1/traces"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": PB})
    code: int | None = None  # google.rpc.Code expected in the Status body of an error


def ct(value: str | None, **more: str) -> dict[str, str]:
    return ({"Content-Type": value} if value else {}) | more


CASES = [
    # accepted
    Case("protobuf traces", 200, traces_pb()),
    Case("protobuf metrics", 200, metrics_pb(), "/v1/metrics"),
    Case("protobuf logs", 200, logs_pb(), "/v1/logs"),
    Case("JSON traces", 200, SPANS_JSON, headers=ct(JS)),
    Case("JSON metrics", 200, METRICS_JSON, "/v1/metrics", headers=ct(JS)),
    Case("JSON logs", 200, LOGS_JSON, "/v1/logs", headers=ct(JS)),
    Case("empty protobuf body", 200, b""),
    Case("empty JSON body", 200, b"", headers=ct(JS)),
    Case("empty JSON object", 200, b"{}", headers=ct(JS)),
    Case("JSON with charset parameter", 200, SPANS_JSON, headers=ct("application/json; charset=utf-8")),
    Case("unknown JSON fields are ignored", 200, b'{"resourceSpans": [], "futureField": 1}', headers=ct(JS)),
    Case("partial success: span with a 5-byte trace id", 200, traces_pb(bad_ids=2)),
    Case("gzip body", 200, gzip.compress(traces_pb()), headers=ct(PB, **{"Content-Encoding": "gzip"})),
    # bad data: 400 INVALID_ARGUMENT
    Case("malformed protobuf", 400, b"\x0a\xff\xff\xff\xff\x0f", code=3),
    Case("truncated protobuf", 400, traces_pb()[:-3], code=3),
    Case("malformed JSON", 400, b'{"resourceSpans": [', headers=ct(JS), code=3),
    Case("JSON that is not an object", 400, b"[1, 2]", headers=ct(JS), code=3),
    Case(
        "JSON id that is not hex",
        400,
        SPANS_JSON.replace(TRACE_ID.encode(), b"z" * 32),
        headers=ct(JS),
        code=3,
    ),
    Case("JSON field of the wrong type", 400, b'{"resourceSpans": 5}', headers=ct(JS), code=3),
    Case("bad gzip", 400, b"\x1f\x8b\x08\x00garbage", headers=ct(PB, **{"Content-Encoding": "gzip"}), code=3),
    Case(
        "truncated gzip",
        400,
        gzip.compress(traces_pb())[:-8],
        headers=ct(PB, **{"Content-Encoding": "gzip"}),
        code=3,
    ),
    # media types and codings the receiver does not take: 415 (RFC 9110)
    Case("text/plain", 415, b"hello", headers=ct("text/plain"), code=3),
    Case("no Content-Type", 415, traces_pb(), headers=ct(None), code=3),
    Case("Content-Encoding br", 415, traces_pb(), headers=ct(PB, **{"Content-Encoding": "br"}), code=3),
    # size limits, as sent and after decompression: 413
    Case("body over the limit", 413, b"\x00" * (LIMIT + 1), code=8),
    Case(
        "gzip bomb",
        413,
        gzip.compress(b"\x00" * (LIMIT * 8)),
        headers=ct(PB, **{"Content-Encoding": "gzip"}),
        code=8,
    ),
    # routing: 404 / 405 with a Status body too (UNIMPLEMENTED)
    Case("unknown signal path", 404, traces_pb(), "/v1/profiles", code=12),
    Case("root path", 404, b"", "/", code=12),
    Case("unknown path, JSON request", 404, SPANS_JSON, "/v2/traces", headers=ct(JS), code=12),
    Case("GET on a signal path", 405, method="GET", headers={}, code=12),
    Case("PUT with JSON", 405, SPANS_JSON, method="PUT", headers=ct(JS), code=12),
    Case("DELETE on logs", 405, path="/v1/logs", method="DELETE", code=12),
]


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    from forewarn.config import load_settings

    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path_factory.mktemp("probe")),
            "collector": {"max_request_bytes": LIMIT},
        }
    )
    with (
        RunningCollector(settings, ControlledExporter()) as svc,
        httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=30) as http,
    ):
        yield http


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_probe(collector, case: Case) -> None:
    r = collector.request(case.method, case.path, content=case.body, headers=case.headers)
    assert r.status_code == case.status, r.content[:300]
    asked_json = case.headers.get("Content-Type", "").startswith(JS)
    want_type = JS if asked_json else PB
    assert r.headers["content-type"].split(";")[0] == want_type  # the response is encoded like the request
    if case.status == 200:
        if case.path == "/v1/traces" and not asked_json:
            resp = ExportTraceServiceResponse.FromString(r.content)
            assert resp.HasField("partial_success") == ("partial" in case.name)
        return
    st = (
        json_format.Parse(r.content, status_pb2.Status())
        if asked_json
        else status_pb2.Status.FromString(r.content)
    )
    assert st.code == case.code and st.message, st
    assert "Traceback" not in st.message
    if case.status == 405:
        assert r.headers["allow"] == "POST"
    if case.status == 415:
        assert r.headers["accept-encoding"] == "gzip, deflate, zstd, identity"


def test_missing_token_is_401_with_a_status_body(settings) -> None:
    s = settings.model_copy(deep=True)
    s.collector.auth_tokens = ["s3cret"]  # type: ignore[list-item]
    with RunningCollector(s, ControlledExporter()) as svc:
        r = httpx.post(
            f"http://127.0.0.1:{svc.http_port}/v1/traces", content=traces_pb(), headers={"Content-Type": JS}
        )
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    st = json_format.Parse(r.content, status_pb2.Status())
    assert st.code == 16 and "s3cret" not in r.text
