"""Retries under one dedup token never duplicate rows; distinct tokens, or none, land (real chDB)."""

from __future__ import annotations

import pytest
from forewarn.collector.convert import BadPayload, insert_requests
from test_convert_traces import trace_request


def count(store, db: str, table: str = "otel_traces") -> int:
    return int(store.query(f"SELECT count() FROM `{db}`.`{table}`").result_rows[0][0])


def test_without_token_identical_requests_are_distinct_exports(store, settings):
    """Like the OpenTelemetry exporter: the same request sent twice is stored twice."""
    db = settings.storage.database
    payloads = [trace_request(n_spans=4).SerializeToString(), trace_request(n_spans=2).SerializeToString()]
    insert_requests(store, "traces", payloads, database=db)
    insert_requests(store, "traces", payloads, database=db)
    assert count(store, db) == 12


def test_same_token_drops_replay_and_different_tokens_land(store, settings):
    db = settings.storage.database
    payloads = [trace_request(n_spans=3).SerializeToString()]
    insert_requests(store, "traces", payloads, database=db, dedup_token="otlp_spans:0:10-19")
    insert_requests(store, "traces", payloads, database=db, dedup_token="otlp_spans:0:10-19")
    assert count(store, db) == 3
    insert_requests(store, "traces", payloads, database=db, dedup_token="otlp_spans:0:20-29")
    assert count(store, db) == 6


def test_retry_of_prerendered_requests_does_not_duplicate(store, settings):
    db = settings.storage.database
    payloads = [trace_request(n_spans=2, complex_values=True).SerializeToString()]
    for _ in range(2):
        insert_requests(store, "traces", payloads, database=db, dedup_token="batch-7")
    assert count(store, db) == 2


def test_unknown_signal_and_storage_failure_raise(store, settings):
    with pytest.raises(ValueError, match="unknown signal"):
        insert_requests(store, "profiles", [b""], database=settings.storage.database)
    with pytest.raises(Exception, match=r"(?i)database|exist"):
        insert_requests(store, "traces", [trace_request().SerializeToString()], database="no_such_db_x")


def test_undecodable_payloads_are_bad_input_not_storage_failures(store, settings):
    db = settings.storage.database
    good = trace_request(n_spans=2).SerializeToString()
    with pytest.raises(BadPayload, match="payload #1"):
        insert_requests(store, "traces", [good, b"\x0a\xff\xff"], database=db)
    # The skeleton count passes (a span is kept as bytes), ClickHouse's full decode does not.
    req = trace_request(n_spans=1)
    broken = bytearray(req.SerializeToString())
    span = req.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    at = bytes(broken).index(span)
    broken[at : at + 2] = b"\x0a\x7f"  # a trace_id field claiming 127 bytes inside the span
    with pytest.raises(BadPayload, match="payload #0"):
        insert_requests(store, "traces", [bytes(broken)], database=db)
    assert count(store, db) == 0
    assert insert_requests(store, "traces", [good], database=db) == {"otel_traces": 2}


def test_a_statement_that_meets_an_array_value_writes_nothing(store, settings):
    """The pre-render fallback relies on this: even read in many small chunks, a statement's rows
    reach the table as one block, after the last request has been read."""
    from forewarn.collector.convert import COMPLEX_MARKER, _settings, _Source

    db = settings.storage.database
    payloads = [trace_request(n_spans=50).SerializeToString() for _ in range(3)]
    payloads.append(trace_request(n_spans=1, complex_values=True).SerializeToString())
    with _Source(store, "traces", payloads) as source, pytest.raises(Exception, match=COMPLEX_MARKER):
        source.insert(
            "otel_traces",
            db,
            {**_settings("traces", "otel_traces", "tok", source.embedded), "max_block_size": 1},
        )
    assert count(store, db) == 0
