"""Field-by-field fidelity of log records written by forewarn.collector.convert (real chDB)."""

from __future__ import annotations

from forewarn.collector.convert import insert_requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from test_convert_traces import ARRAY, ARRAY_TEXT, KVLIST, KVLIST_TEXT, NOW, SCALARS, kv, rows, scalar_texts

# Bodies of every AnyValue type, with their stored text.
BODIES = [(AnyValue(**v), text) for v, text in SCALARS.values()] + [
    (ARRAY, ARRAY_TEXT),
    (KVLIST, KVLIST_TEXT),
]


def logs_request(bodies=BODIES) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add(schema_url="https://res/1.0")
    rl.resource.attributes.extend([kv("service.name", string_value="api"), kv("pid", int_value=42)])
    sl = rl.scope_logs.add(schema_url="https://scope/1.0")
    sl.scope.name, sl.scope.version = "logger", "0.9"
    sl.scope.attributes.append(kv("scope.flag", bool_value=True))
    sl.scope.dropped_attributes_count = 3
    for i, (body, _) in enumerate(bodies):
        rec = sl.log_records.add(
            time_unix_nano=0 if i == 1 else NOW + i,
            observed_time_unix_nano=NOW + 1000 + i,
            severity_number=i % 25,
            severity_text=f"SEV{i}",
            flags=0x1FF if i == 0 else 1,
            trace_id=bytes(range(16)) if i % 3 == 0 else (b"\x01\x02" if i % 3 == 1 else b""),
            span_id=bytes([7] * 8) if i % 3 == 0 else b"\x01",
            event_name=f"ev{i}",
        )
        rec.body.CopyFrom(body)
        rec.attributes.extend(
            [kv("i", int_value=i), *([KeyValue(key="all", value=AnyValue())] if i == 0 else [])]
        )
    return req


def test_every_log_field_and_body_type(store, settings):
    db = settings.storage.database
    req = logs_request()
    assert insert_requests(store, "logs", [req.SerializeToString()], database=db) == {
        "otel_logs": len(BODIES)
    }
    got = rows(
        store, db, "SELECT *, toUnixTimestamp64Nano(Timestamp) AS ts_ns FROM DB.otel_logs ORDER BY EventName"
    )
    got.sort(key=lambda r: int(r["EventName"][2:]))
    assert len(got) == len(BODIES)
    for i, row in enumerate(got):
        assert row["Body"] == BODIES[i][1], i
        assert row["ts_ns"] == (NOW + 1001 if i == 1 else NOW + i)
        assert row["TraceId"] == (bytes(range(16)).hex() if i % 3 == 0 else "")
        assert row["SpanId"] == ("07" * 8 if i % 3 == 0 else "")
        assert row["TraceFlags"] == (0xFF if i == 0 else 1)
        assert row["SeverityNumber"] == i % 25
        assert row["SeverityText"] == f"SEV{i}"
        assert row["ServiceName"] == "api"
        assert row["ResourceSchemaUrl"] == "https://res/1.0"
        assert row["ResourceAttributes"] == {"service.name": "api", "pid": "42"}
        assert row["ScopeSchemaUrl"] == "https://scope/1.0"
        assert (row["ScopeName"], row["ScopeVersion"]) == ("logger", "0.9")
        assert row["ScopeAttributes"] == {"scope.flag": "true"}
        assert row["LogAttributes"] == ({"i": str(i), "all": ""} if i == 0 else {"i": str(i)})
        assert row["EventName"] == f"ev{i}"


def test_structured_attributes_in_scope_and_resource(store, settings):
    db = settings.storage.database
    req = logs_request(bodies=[(AnyValue(string_value="plain"), "plain")])
    req.resource_logs[0].resource.attributes.append(KeyValue(key="tags", value=ARRAY))
    req.resource_logs[0].scope_logs[0].scope.attributes.append(KeyValue(key="cfg", value=KVLIST))
    rec = req.resource_logs[0].scope_logs[0].log_records[0]
    rec.attributes.append(
        KeyValue(
            key="nested", value=AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="l", value=ARRAY)]))
        )
    )
    insert_requests(store, "logs", [req.SerializeToString()], database=db)
    (row,) = rows(store, db, "SELECT * FROM DB.otel_logs")
    assert row["Body"] == "plain"
    assert row["ResourceAttributes"]["tags"] == ARRAY_TEXT
    assert row["ScopeAttributes"] == {"scope.flag": "true", "cfg": KVLIST_TEXT}
    assert row["LogAttributes"] == {"i": "0", "all": "", "nested": '{"l":' + ARRAY_TEXT + "}"}
    assert scalar_texts()  # the shared table of texts stays importable


def test_many_resources_and_scopes_keep_their_own_attributes(store, settings):
    db = settings.storage.database
    req = ExportLogsServiceRequest()
    for r in range(3):
        rl = req.resource_logs.add(schema_url=f"res{r}")
        rl.resource.attributes.extend([kv("service.name", string_value=f"svc{r}"), kv("r", int_value=r)])
        for s in range(r + 1):  # 1, 2 and 3 scopes; the middle resource's scopes have no records
            sl = rl.scope_logs.add(schema_url=f"scope{r}.{s}")
            sl.scope.name = f"lib{r}.{s}"
            sl.scope.attributes.append(kv("s", string_value=f"{r}.{s}"))
            for i in range(0 if r == 1 else s + 1):
                rec = sl.log_records.add(time_unix_nano=NOW + i, event_name=f"{r}.{s}.{i}")
                rec.body.string_value = f"{r}.{s}.{i}"
    counts = insert_requests(
        store, "logs", [req.SerializeToString(), logs_request().SerializeToString()], database=db
    )
    assert counts == {"otel_logs": 1 + 1 + 2 + 3 + len(BODIES)}
    got = rows(store, db, "SELECT * FROM DB.otel_logs WHERE ServiceName LIKE 'svc%'")
    assert sorted(r["Body"] for r in got) == ["0.0.0", "2.0.0", "2.1.0", "2.1.1", "2.2.0", "2.2.1", "2.2.2"]
    for row in got:
        r, s, _ = row["Body"].split(".")
        assert row["ServiceName"] == f"svc{r}" and row["ResourceAttributes"]["r"] == r
        assert row["ResourceSchemaUrl"] == f"res{r}" and row["ScopeSchemaUrl"] == f"scope{r}.{s}"
        assert row["ScopeName"] == f"lib{r}.{s}" and row["ScopeAttributes"] == {"s": f"{r}.{s}"}
