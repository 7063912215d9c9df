"""The server (HTTP) branch of insert_requests: statement shape and body, recorded without a server.

No ClickHouse server runs here, so this only checks what would be sent (the SQL reads ``input()``
and the framed requests travel as the request body, settings as query parameters); the embedded
branch is the one exercised end to end against the real engine.
"""

from __future__ import annotations

from forewarn.collector.convert import frame, insert_requests
from test_convert_traces import trace_request


class RecordingClient:
    uri = "http://127.0.0.1:8123"

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes | None, dict]] = []

    def command(self, sql: str, data: bytes | None = None, settings: dict | None = None) -> None:
        self.calls.append((sql, data, settings or {}))


def test_server_branch_sends_body_to_input():
    client = RecordingClient()
    payloads = [trace_request(n_spans=2).SerializeToString(), trace_request(n_spans=1).SerializeToString()]
    assert insert_requests(client, "traces", payloads, database="otel", dedup_token="t1") == {
        "otel_traces": 3
    }
    ((sql, body, settings),) = client.calls
    assert sql.startswith("INSERT INTO `otel`.`otel_traces` (")
    assert "FROM input('resource_spans Array(" in sql and sql.endswith("FORMAT Protobuf")
    assert body == frame(payloads)
    assert settings["insert_deduplication_token"] == "t1"
    assert (
        settings["format_schema_source"] == "string"
        and "ExportTraceServiceRequest" in settings["format_schema"]
    )


def test_metric_tables_get_one_statement_each_with_derived_tokens():
    from test_convert_metrics import metrics_request

    client = RecordingClient()
    insert_requests(
        client, "metrics", [metrics_request().SerializeToString()], database="otel", dedup_token="k"
    )
    tokens = [settings["insert_deduplication_token"] for _, _, settings in client.calls]
    assert tokens == [
        f"k:otel_metrics_{k}" for k in ("gauge", "sum", "histogram", "exponential_histogram", "summary")
    ]
