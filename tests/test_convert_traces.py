"""Field-by-field fidelity of spans written by forewarn.collector.convert (real chDB)."""

from __future__ import annotations

import time

from forewarn.collector.convert import insert_requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Status

NOW = (int(time.time()) // 60 * 60) * 10**9  # TTL drops rows older than the retention


def kv(key: str, **value) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


# Every AnyValue type, with the text pdata's Value.AsString() gives it.
SCALARS = {
    "s": ({"string_value": 'héllo "q" <&>'}, 'héllo "q" <&>'),
    "s_empty": ({"string_value": ""}, ""),
    "b_true": ({"bool_value": True}, "true"),
    "b_false": ({"bool_value": False}, "false"),
    "i_zero": ({"int_value": 0}, "0"),
    "i_neg": ({"int_value": -9223372036854775808}, "-9223372036854775808"),
    "d_half": ({"double_value": 1.5}, "1.5"),
    "d_int": ({"double_value": 100.0}, "100"),
    "d_big": ({"double_value": 1e21}, "1e+21"),
    "d_fixed_big": ({"double_value": 1e20}, "100000000000000000000"),
    "d_small": ({"double_value": 1.234e-7}, "1.234e-7"),
    "d_micro": ({"double_value": 0.000001}, "0.000001"),
    "d_round": ({"double_value": 123456789012345678.0}, "123456789012345680"),
    "d_nan": ({"double_value": float("nan")}, "json: unsupported value: NaN"),
    "d_inf": ({"double_value": float("-inf")}, "json: unsupported value: -Inf"),
    "bytes": ({"bytes_value": b"\x00\xffab"}, "AP9hYg=="),
    "empty": ({}, ""),
}
ARRAY = AnyValue(
    array_value=ArrayValue(
        values=[
            AnyValue(int_value=1),
            AnyValue(string_value='a"\n\u2028'),
            AnyValue(bool_value=True),
            AnyValue(double_value=2.5),
            AnyValue(bytes_value=b"\x01"),
            AnyValue(),
            AnyValue(kvlist_value=KeyValueList(values=[kv("z", int_value=1), kv("a", string_value="x")])),
        ]
    )
)
ARRAY_TEXT = '[1,"a\\"\\n\\u2028",true,2.5,"AQ==",null,{"a":"x","z":1}]'
KVLIST = AnyValue(
    kvlist_value=KeyValueList(
        values=[kv("b", int_value=1), kv("a", array_value=ArrayValue(values=[])), kv("b", int_value=2)]
    )
)
KVLIST_TEXT = '{"a":[],"b":2}'


def scalar_attrs() -> list[KeyValue]:
    return [kv(k, **v) for k, (v, _) in SCALARS.items()]


def scalar_texts() -> dict[str, str]:
    return {k: text for k, (_, text) in SCALARS.items()}


def trace_request(n_spans: int = 3, complex_values: bool = False) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(schema_url="https://res")
    rs.resource.attributes.extend(
        [kv("service.name", string_value="checkout"), kv("host.cores", int_value=8)]
    )
    ss = rs.scope_spans.add(schema_url="https://scope")
    ss.scope.name, ss.scope.version = "io.lib", "1.2.3"
    for i in range(n_spans):
        sp = ss.spans.add(
            trace_id=bytes(range(1, 17)),
            span_id=bytes([0xAB] * 7 + [i]),
            parent_span_id=b"" if i == 0 else (b"\x00" * 8 if i == 1 else bytes([0xCD] * 8)),
            trace_state="vendor=x" if i == 2 else "",
            name=f"op{i}",
            kind=i % 6,
            start_time_unix_nano=NOW + i,
            end_time_unix_nano=NOW + i + 1_500_000_123,
            status=Status(code=i % 3, message="boom" if i % 3 == 2 else ""),
        )
        sp.attributes.extend(scalar_attrs())
        if complex_values:
            sp.attributes.extend([KeyValue(key="arr", value=ARRAY), KeyValue(key="kvl", value=KVLIST)])
        ev = sp.events.add(time_unix_nano=NOW + 7, name="exception")
        ev.attributes.extend([kv("exception.type", string_value="ValueError"), kv("n", int_value=3)])
        sp.events.add(time_unix_nano=NOW + 8, name="empty")
        ln = sp.links.add(trace_id=bytes([0x11] * 16), span_id=bytes([0x22] * 8), trace_state="a=b")
        ln.attributes.append(kv("link.flag", bool_value=True))
        sp.links.add(trace_id=b"\x00" * 16, span_id=b"")
    return req


def rows(store, db: str, sql: str) -> list[dict]:
    res = store.query(sql.replace("DB", f"`{db}`"))
    return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]


def test_every_span_field(store, settings):
    db = settings.storage.database
    req = trace_request()
    assert insert_requests(store, "traces", [req.SerializeToString()], database=db) == {"otel_traces": 3}
    got = rows(
        store,
        db,
        "SELECT *, toUnixTimestamp64Nano(Timestamp) AS ts_ns, "
        "arrayMap(x -> toUnixTimestamp64Nano(x), Events.Timestamp) AS ev_ns FROM DB.otel_traces ORDER BY SpanName",
    )
    assert len(got) == 3
    for i, row in enumerate(got):
        assert row["ts_ns"] == NOW + i
        assert row["TraceId"] == "0102030405060708090a0b0c0d0e0f10"
        assert row["SpanId"] == "abababababababab"[:14] + f"{i:02x}"
        assert row["ParentSpanId"] == ("" if i < 2 else "cdcdcdcdcdcdcdcd")
        assert row["TraceState"] == ("vendor=x" if i == 2 else "")
        assert row["SpanName"] == f"op{i}"
        assert row["SpanKind"] == ["Unspecified", "Internal", "Server"][i]
        assert row["ServiceName"] == "checkout"
        assert row["ResourceAttributes"] == {"service.name": "checkout", "host.cores": "8"}
        assert (row["ScopeName"], row["ScopeVersion"]) == ("io.lib", "1.2.3")
        assert row["SpanAttributes"] == scalar_texts()
        assert row["Duration"] == 1_500_000_123
        assert row["StatusCode"] == ["Unset", "Ok", "Error"][i]
        assert row["StatusMessage"] == ("boom" if i == 2 else "")
        assert row["ev_ns"] == [NOW + 7, NOW + 8]
        assert row["Events.Name"] == ["exception", "empty"]
        assert row["Events.Attributes"] == [{"exception.type": "ValueError", "n": "3"}, {}]
        assert row["Links.TraceId"] == ["11" * 16, ""]
        assert row["Links.SpanId"] == ["22" * 8, ""]
        assert row["Links.TraceState"] == ["a=b", ""]
        assert row["Links.Attributes"] == [{"link.flag": "true"}, {}]


def test_span_kinds_and_status_codes_outside_the_enum(store, settings):
    db = settings.storage.database
    req = trace_request(n_spans=6)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[5].kind = 9
    spans[5].status.code = 7
    insert_requests(store, "traces", [req.SerializeToString()], database=db)
    got = rows(store, db, "SELECT SpanName, SpanKind, StatusCode FROM DB.otel_traces ORDER BY SpanName")
    assert [r["SpanKind"] for r in got] == ["Unspecified", "Internal", "Server", "Client", "Producer", ""]
    assert [r["StatusCode"] for r in got][:5] == ["Unset", "Ok", "Error", "Unset", "Ok"]
    assert got[5]["StatusCode"] == ""


def test_arrays_and_kvlists_as_json(store, settings):
    db = settings.storage.database
    plain, fancy = trace_request(n_spans=2), trace_request(n_spans=1, complex_values=True)
    fancy.resource_spans[0].resource.attributes.append(KeyValue(key="res.list", value=ARRAY))
    counts = insert_requests(
        store, "traces", [plain.SerializeToString(), fancy.SerializeToString()], database=db
    )
    assert counts == {"otel_traces": 3}
    got = rows(store, db, "SELECT SpanAttributes, ResourceAttributes FROM DB.otel_traces")
    fancy_rows = [r for r in got if "arr" in r["SpanAttributes"]]
    assert len(fancy_rows) == 1
    assert fancy_rows[0]["SpanAttributes"] == {**scalar_texts(), "arr": ARRAY_TEXT, "kvl": KVLIST_TEXT}
    assert fancy_rows[0]["ResourceAttributes"]["res.list"] == ARRAY_TEXT
    assert all(r["SpanAttributes"] == scalar_texts() for r in got if r is not fancy_rows[0])


def test_many_requests_one_call_and_empty_ones(store, settings):
    db = settings.storage.database
    payloads = [trace_request(n_spans=n).SerializeToString() for n in (1, 2, 3)]
    payloads.append(ExportTraceServiceRequest().SerializeToString())
    assert insert_requests(store, "traces", payloads, database=db) == {"otel_traces": 6}
    assert insert_requests(store, "traces", [], database=db) == {"otel_traces": 0}
    assert rows(store, db, "SELECT count() AS n FROM DB.otel_traces") == [{"n": 6}]


def test_doubles_render_like_go_across_magnitudes(store, settings):
    import random

    from forewarn.collector.convert_anyvalue import go_float

    rnd = random.Random(3)
    values = [
        0.1,
        1e-6,
        9.99999e-7,
        1e21,
        9.999999999999999e20,
        -1e21,
        2.0**70,
        5e-324,
        1.7976931348623157e308,
    ]
    values += [rnd.uniform(-1, 1) * 10 ** rnd.randint(-30, 30) for _ in range(300)]
    req = trace_request(n_spans=1)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    del span.attributes[:]
    span.attributes.extend(kv(f"d{i}", double_value=v) for i, v in enumerate(values))
    insert_requests(store, "traces", [req.SerializeToString()], database=settings.storage.database)
    (row,) = rows(store, settings.storage.database, "SELECT SpanAttributes FROM DB.otel_traces")
    assert row["SpanAttributes"] == {f"d{i}": go_float(v) for i, v in enumerate(values)}


class CountingClient:
    """Forwards to the real client, counting statements (to see which path a batch took)."""

    def __init__(self, client) -> None:
        self.client, self.uri, self.statements = client, client.uri, 0

    def command(self, *args, **kwargs):
        self.statements += 1
        return self.client.command(*args, **kwargs)


def test_resource_arrays_are_rendered_up_front_span_arrays_on_retry(store, settings):
    db = settings.storage.database
    req = trace_request(n_spans=2)
    req.resource_spans[0].resource.attributes.append(KeyValue(key="process.command_args", value=ARRAY))
    spy = CountingClient(store)
    insert_requests(spy, "traces", [req.SerializeToString()], database=db)
    assert spy.statements == 1
    spy = CountingClient(store)
    insert_requests(
        spy, "traces", [trace_request(n_spans=1, complex_values=True).SerializeToString()], database=db
    )
    assert spy.statements == 2  # the first statement stops at the array, nothing written; re-run
    got = rows(store, db, "SELECT ResourceAttributes, SpanAttributes FROM DB.otel_traces")
    assert len(got) == 3
    assert sum(r["ResourceAttributes"].get("process.command_args") == ARRAY_TEXT for r in got) == 2
    assert sum(r["SpanAttributes"].get("arr") == ARRAY_TEXT for r in got) == 1
