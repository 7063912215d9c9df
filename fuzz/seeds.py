"""Writes the seed corpus of every harness (``fuzz/corpus/<harness>/``): small valid inputs that
cover each signal, value kind and API shape, so mutation starts from the real formats.

Run ``python fuzz/seeds.py`` after changing it; the files are committed.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

import bcrypt
import orjson
import yaml
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

HERE = Path(__file__).resolve().parent
SIGNALS = ("traces", "metrics", "logs")  # the first input byte selects one (byte % 3)


def _values() -> list[AnyValue]:
    inner = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(int_value=-1))]))
    return [
        AnyValue(string_value="é ✓ \u2028"),
        AnyValue(bool_value=True),
        AnyValue(int_value=-(2**63)),
        AnyValue(double_value=1e21),
        AnyValue(double_value=float("nan")),
        AnyValue(bytes_value=b"\x00\xff"),
        AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=0.1), inner, AnyValue()])),
        inner,
    ]


def _attrs(prefix: str) -> list[KeyValue]:
    return [KeyValue(key=f"{prefix}.{i}", value=v) for i, v in enumerate(_values())]


def traces() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rs.resource.attributes.extend(_attrs("res"))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "lib", "1.0"
    ss.scope.attributes.extend(_attrs("scope")[:2])
    sp = ss.spans.add(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        parent_span_id=bytes(range(2, 10)),
        name="GET /x",
        kind=2,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
        trace_state="a=b",
        flags=257,
    )
    sp.attributes.extend(_attrs("span"))
    sp.events.add(time_unix_nano=1_700_000_000_100_000_000, name="ev").attributes.extend(_attrs("ev")[:3])
    sp.links.add(trace_id=bytes(range(3, 19)), span_id=bytes(range(3, 11))).attributes.extend(_attrs("l")[:2])
    sp.status.code, sp.status.message = 2, "boom"
    ss.spans.add(trace_id=b"short", span_id=bytes(8), name="bad")
    return req


def metrics() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(_attrs("res")[:3])
    sm = rm.scope_metrics.add()
    sm.scope.name = "meter"
    g = sm.metrics.add(name="g", unit="1", description="gauge")
    p = g.gauge.data_points.add(time_unix_nano=1, as_double=1.5)
    p.attributes.extend(_attrs("p")[:2])
    p.exemplars.add(time_unix_nano=1, as_int=3, trace_id=bytes(16), span_id=bytes(8))
    s = sm.metrics.add(name="s")
    s.sum.aggregation_temporality, s.sum.is_monotonic = 2, True
    s.sum.data_points.add(time_unix_nano=2, as_int=7)
    h = sm.metrics.add(name="h")
    h.histogram.data_points.add(count=3, sum=2.0, bucket_counts=[1, 2], explicit_bounds=[1.0], min=0.1, max=9)
    h.histogram.data_points.add(count=1, bucket_counts=[1, 2, 3], explicit_bounds=[1.0])  # rejected
    e = sm.metrics.add(name="e")
    ep = e.exponential_histogram.data_points.add(count=4, scale=2, zero_count=1)
    ep.positive.offset, ep.negative.offset = -2, 3
    ep.positive.bucket_counts.extend([1, 2])
    ep.negative.bucket_counts.extend([1])
    su = sm.metrics.add(name="su")
    sp = su.summary.data_points.add(count=2, sum=3.0)
    sp.quantile_values.add(quantile=0.5, value=1.0)
    sm.metrics.add(name="empty")  # no data: rejected
    return req


def logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(_attrs("res")[:2])
    sl = rl.scope_logs.add()
    for i, v in enumerate(_values()):
        r = sl.log_records.add(time_unix_nano=i, severity_number=9, severity_text="INFO", event_name="e")
        r.body.CopyFrom(v)
        r.attributes.extend(_attrs("a")[i : i + 2])
        r.trace_id, r.span_id = bytes(range(16)), bytes(range(8))
    return req


def otlp_json(msg) -> bytes:  # type: ignore[no-untyped-def]
    """OTLP/JSON: hex ids instead of protobuf JSON's base64."""
    d = json_format.MessageToDict(msg)

    def walk(v):  # type: ignore[no-untyped-def]
        if isinstance(v, dict):
            for k, x in list(v.items()):
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(x, str):
                    v[k] = base64.b64decode(x).hex()
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(d)
    return orjson.dumps(d)


ALERTS = [
    [{"labels": {"alertname": "Down", "job": "api"}, "annotations": {"summary": "x"}}],
    [
        {
            "labels": {"alertname": "A", "instance": "i1"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2026-01-01T01:00:00.123456789+02:00",
            "generatorURL": "http://prom:9090/graph?g0.expr=up",
        },
        {"labels": {"alertname": "B"}, "startsAt": "2026-11-23 07:00:00Z"},
    ],
    [{"labels": {}}],
    None,
]
SILENCES = [
    {
        "matchers": [{"name": "job", "value": "api|db", "isRegex": True, "isEqual": False}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "me",
        "comment": "maintenance",
    },
    {"id": "7f3e1b2a-0000-4000-8000-000000000000", "matchers": []},
]
FILTERS = ['alertname="Down"', 'job=~"a.*"', "{a!=b}", 'x!~"\\\\d+"', 'a="\\u00e9"']

CONFIGS = [
    """
global: {resolve_timeout: 5m}
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 5s
  routes:
    - matchers: ['severity="critical"']
      match_re: {service: "api|db"}
      receiver: team.ops
      continue: true
    - matchers: ['severity=~"crit.*"']
      receiver: all
      group_by: ['...']
      mute_time_intervals: [night]
    - match: {team: frontend}
      receiver: default
      group_by: [team, env]
      active_time_intervals: [night]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
time_intervals:
  - name: night
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}]
        weekdays: ["monday:friday", saturday]
        days_of_month: ["1:5", "-3:-1"]
        months: ["january:march", 12]
        years: ["2020:2030"]
        location: Europe/Paris
receivers:
  - name: default
    webhook_configs: [{url: "http://127.0.0.1:1/hook", max_alerts: 2, send_resolved: false}]
  - name: team.ops
    slack_configs: [{api_url: "http://127.0.0.1:1/slack", channel: "#ops"}]
    pagerduty_configs: [{routing_key: key, url: "http://127.0.0.1:1/pd"}]
  - name: all
    webhook_configs:
      - url: "http://127.0.0.1:1/all"
        http_config:
          basic_auth: {username: u, password: p}
          tls_config: {insecure_skip_verify: true}
""",
    "route: {receiver: x}\nreceivers: [{name: x}]\n",
    "route: {receiver: x}\nreceivers: [{name: x, webhook_configs: [{url: 'https://h/', "
    "http_config: {tls_config: {ca_file: /nonexistent/ca.pem, cert_file: c.pem, key_file: k.pem}}}]}]\n",
    'route: {receiver: x, routes: [{receiver: x, matchers: [\'{a=~"b|c", d!="e"}\']}]}\nreceivers: [{name: x}]\n',
]

WEB_CONFIGS = [
    """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: HASH
""",
    "basic_auth_users: {}\n",
    "{}\n",
]


def clickhouse_http() -> list[bytes]:
    """Request parts of the ClickHouse HTTP interface, each behind its parser byte."""
    import gzip

    from forewarn.clickhouse_http import codec

    sql = "SELECT {x:UInt8} AS a, 'q''s' -- c\nFROM t /* b */ FORMAT JSON; INSERT INTO t VALUES (1)"
    block = b"\x01\x01" + b"\x01x" + b"\x05UInt8" + b"\x07"  # 1 column, 1 row: x UInt8 = 7
    strings = b"\x01\x02" + b"\x01s" + b"\x06String" + b"\x02ab\x00"
    auth = "Basic " + base64.b64encode(b"default:pw").decode()
    return [
        b"\x00\x00query=SELECT+1&param_x=1&max_threads=2&database=otel&compress=1&buffer_size=10\n\n"
        + auth.encode(),
        b"\x00\x01user=u&password=p&session_timeout=60&client_protocol_version=54460\n\n\nreader\nkey",
        b"\x01\x00" + sql.encode(),
        b"\x02\x00" + gzip.compress(b"SELECT 1" * 20),
        b"\x02\x02" + codec.encoder("br").write(b"SELECT 1") + codec.encoder("br").flush(),
        b"\x03\x01" + codec.NativeBlockWriter().write(b"SELECT 1" * 20),
        b"\x04\x03" + block + strings,
        b"\x05\x00Code: 62. DB::Exception: Syntax error: failed at position 1 ('x'). (SYNTAX_ERROR)",
    ]


def write(harness: str, items: list[bytes]) -> None:
    d = HERE / "corpus" / harness
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for data in items:
        (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main() -> int:
    msgs = {"traces": traces(), "metrics": metrics(), "logs": logs()}
    sel = {s: bytes([i]) for i, s in enumerate(SIGNALS)}
    pb = [sel[s] + m.SerializeToString() for s, m in msgs.items()]
    pb += [sel["traces"] + b"", sel["metrics"] + b"\n\x00", sel["logs"] + b"\x0a\x02\x12\x00"]
    write("otlp_protobuf", pb)
    write("convert", pb)
    js = [sel[s] + otlp_json(m) for s, m in msgs.items()]
    js += [
        sel["traces"]
        + b'{"resource_spans": [{"scope_spans": [{"spans": [{"trace_id": "00", "kind": "SPAN_KIND_SERVER"}]}]}]}'
    ]
    js += [
        sel["metrics"]
        + b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": [{"asInt": "9007199254740993"}]}}]}]}]}'
    ]
    write("otlp_json", js)
    api = [b"\x00" + orjson.dumps(a) for a in ALERTS] + [b"\x01" + orjson.dumps(s) for s in SILENCES]
    api += [bytes([k]) + f.encode() for f in FILTERS for k in (2, 3, 4)]
    api += [bytes([k]) + b"7f3e1b2a-0000-4000-8000-000000000000" for k in (5, 6)]
    auth = [b"alice:secret", b"alice:wrong", b"bob:secret", b"alice:" + b"secret" + b"x" * 70]
    api += [b"\x07Basic " + base64.b64encode(a) for a in auth] + [b"\x07Bearer t0ken", b"\x07Bearer nope"]
    write("alerts_api", api)
    cfgs = [c.encode() for c in CONFIGS] + [
        yaml.safe_dump(yaml.safe_load(CONFIGS[0]), sort_keys=True).encode()
    ]
    # bcrypt of "secret" at the lowest cost, with a fixed salt so the corpus is reproducible
    h = bcrypt.hashpw(b"secret", b"$2b$04$abcdefghijklmnopqrstuu").decode()
    webs = [w.replace("HASH", h).encode() for w in WEB_CONFIGS]
    write("alerts_config", [b"\x00" + c for c in cfgs] + [b"\x01" + w for w in webs])
    write("clickhouse_http", clickhouse_http())
    return 0


if __name__ == "__main__":
    sys.exit(main())
