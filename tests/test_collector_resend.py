"""Re-sends on the direct path are stored once (collector/resend_dedup.py), against real chDB:
the crash windows are reproduced by cutting a group commit at each of its steps, then re-sending."""

from __future__ import annotations

from typing import Any

import pytest
from collector_support import RunningCollector
from forewarn.collector.ingest_dedup import digest
from forewarn.collector.resend_dedup import ResendDedup
from test_convert_metrics import metrics_request
from test_convert_traces import trace_request

from forewarn.storage.tables import BATCH_COLUMN

METRIC_TABLES = ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram")


def spans(tag: int, n: int = 3) -> bytes:
    """A traces request whose bytes differ by ``tag`` (a resource attribute)."""
    req = trace_request(n_spans=n)
    attr = req.resource_spans[0].resource.attributes.add(key="tag")
    attr.value.int_value = tag
    return req.SerializeToString()


def metrics(tag: int) -> bytes:
    req = metrics_request()
    attr = req.resource_metrics[0].resource.attributes.add(key="tag")
    attr.value.int_value = tag
    return req.SerializeToString()


def count(store: Any, db: str, table: str = "otel_traces") -> int:
    return int(store.query(f"SELECT count() FROM `{db}`.`{table}`").result_rows[0][0])


def per_table(store: Any, db: str) -> dict[str, int]:
    return {t: count(store, db, t) for t in METRIC_TABLES}


class Cut:
    """A client that fails (as a killed process would stop) at the first statement matching ``at``;
    the statements before it ran for real."""

    def __init__(self, inner: Any, at: str):
        self.inner, self.at = inner, at
        self.uri = getattr(inner, "uri", "")
        self.statements: list[str] = []

    def _maybe_fail(self, text: str) -> None:
        self.statements.append(text)
        if self.at in text:
            raise ConnectionError(f"cut before {self.at}")

    def command(self, sql: str, *a: Any, **k: Any) -> Any:
        self._maybe_fail(sql)
        return self.inner.command(sql, *a, **k)

    def query(self, sql: str, *a: Any, **k: Any) -> Any:
        self._maybe_fail(sql)
        return self.inner.query(sql, *a, **k)

    def insert(self, table: str, *a: Any, **k: Any) -> Any:
        self._maybe_fail(f"INSERT {table}")
        return self.inner.insert(table, *a, **k)


def test_a_resend_is_stored_once_and_new_requests_beside_it_are_stored(store, settings):
    db = settings.storage.database
    dedup = ResendDedup(db, 3600)
    a, b, c = spans(1), spans(2), spans(3)
    dedup.insert(store, "traces", [a, b])
    assert count(store, db) == 6
    dedup.insert(store, "traces", [a])  # the answer was lost: the client sends it again
    dedup.insert(store, "traces", [c, b, a])
    assert count(store, db) == 9
    hidden = store.query(f"SELECT * FROM `{db}`.otel_traces LIMIT 1").column_names
    assert BATCH_COLUMN not in hidden  # SELECT * is the OpenTelemetry exporter's schema, unchanged
    groups = store.query(f"SELECT uniqExact({BATCH_COLUMN}) FROM `{db}`.otel_traces").result_rows[0][0]
    assert groups == 2


def test_copies_inside_one_batch_are_stored_once(store, settings):
    db = settings.storage.database
    a = spans(1)
    ResendDedup(db, 3600).insert(store, "traces", [a, spans(2), a, a])
    assert count(store, db) == 6


def test_crash_after_the_plan_and_before_the_rows_stores_the_resend(store, settings):
    db = settings.storage.database
    dedup = ResendDedup(db, 3600)
    a = spans(1)
    with pytest.raises(ConnectionError):
        dedup.insert(Cut(store, "INSERT INTO"), "traces", [a])  # the plan is written, the rows are not
    assert count(store, db, "forewarn_collector_seen") == 1
    assert count(store, db) == 0
    dedup.insert(store, "traces", [a])
    assert count(store, db) == 3
    dedup.insert(store, "traces", [a])
    assert count(store, db) == 3


def test_crash_between_the_tables_of_a_metrics_batch_writes_only_what_is_missing(store, settings):
    db = settings.storage.database
    dedup = ResendDedup(db, 3600)
    m1, m2 = metrics(1), metrics(2)
    whole = per_table(store, db)
    dedup.insert(store, "metrics", [m1])
    one = {t: n - whole[t] for t, n in per_table(store, db).items()}
    assert all(one.values())
    with pytest.raises(ConnectionError):  # gauge rows are in, the rest of the group is not
        dedup.insert(Cut(store, "otel_metrics_sum"), "metrics", [m2])
    assert per_table(store, db) == {
        "otel_metrics_gauge": 2 * one["otel_metrics_gauge"],
        "otel_metrics_sum": one["otel_metrics_sum"],
        "otel_metrics_histogram": one["otel_metrics_histogram"],
    }
    dedup.insert(store, "metrics", [m2, m1])  # m2 re-sent: only sum and histogram are written
    assert per_table(store, db) == {t: 2 * n for t, n in one.items()}
    dedup.insert(store, "metrics", [m2])
    assert per_table(store, db) == {t: 2 * n for t, n in one.items()}


def test_failed_lookup_or_check_stores_the_request_anyway(store, settings):
    db = settings.storage.database
    dedup = ResendDedup(db, 3600)
    a = spans(1)
    dedup.insert(store, "traces", [a])
    dedup.insert(Cut(store, "forewarn_collector_seen` WHERE"), "traces", [a])  # lookup fails
    assert count(store, db) == 6  # a duplicate, never a loss
    dedup.insert(Cut(store, f"count() FROM `{db}`.`otel_traces`"), "traces", [a])  # the check fails
    assert count(store, db) == 9
    dedup.insert(Cut(store, "INSERT forewarn_collector_seen"), "traces", [spans(2)])  # plan fails
    assert count(store, db) == 12


def test_window_and_off(store, settings):
    db = settings.storage.database
    a, b = spans(1), spans(2)
    ResendDedup(db, 0).insert(store, "traces", [a])  # off: no plan either
    ResendDedup(db, 0).insert(store, "traces", [a])
    assert count(store, db) == 6
    assert count(store, db, "forewarn_collector_seen") == 0
    dedup = ResendDedup(db, 60)
    dedup.insert(store, "traces", [b])
    seen = f"`{db}`.forewarn_collector_seen"
    old = f"SELECT signal, hash, batch, rows, seen_at - 61 FROM {seen}"
    store.command(f"INSERT INTO {seen} (signal, hash, batch, rows, seen_at) {old}")  # the plan, a minute ago
    store.command(f"ALTER TABLE {seen} DELETE WHERE seen_at > now64(3) - 30 SETTINGS mutations_sync = 1")
    dedup.insert(store, "traces", [b])  # its first copy is older than the window
    assert count(store, db) == 12


def test_through_the_receivers_a_resend_is_answered_ok_and_stored_once(settings):
    import httpx

    from forewarn.storage import connect

    s = settings.model_copy(deep=True)
    a = spans(7)
    with RunningCollector(s) as svc:
        for _ in range(3):
            r = httpx.post(
                f"http://127.0.0.1:{svc.http_port}/v1/traces",
                content=a,
                headers={"Content-Type": "application/x-protobuf"},
                timeout=30,
            )
            assert r.status_code == 200
        client = connect(s.storage_dsn, s.storage.database)
        try:
            assert count(client, s.storage.database) == 3
        finally:
            client.close()


def test_a_sole_writer_skips_lookups_with_its_filter_and_reloads_it_after_a_restart(store, settings):
    db = settings.storage.database
    first = ResendDedup(db, 3600, sole_writer=True)
    first.load(store)
    a, b = spans(1), spans(2)
    first.insert(store, "traces", [a])
    assert first.filter is not None and first.filter.might_hold(digest(a))
    second = ResendDedup(db, 3600, sole_writer=True)  # a fresh process on the same store
    second.load(store)
    assert second.filter is not None and second.filter.might_hold(digest(a))
    second.insert(store, "traces", [a, b])
    assert count(store, db) == 6
    # with the filter, a batch of requests never planned runs no lookup at all...
    watch = Cut(store, "never")
    second.insert(watch, "traces", [spans(3)])
    assert count(store, db) == 9
    assert not [s for s in watch.statements if "FROM `" in s and "forewarn_collector_seen` WHERE" in s]
    watch = Cut(store, "never")  # ... while a possible re-send is looked up
    second.insert(watch, "traces", [b])
    assert [s for s in watch.statements if "forewarn_collector_seen` WHERE" in s]
    assert count(store, db) == 9


def test_a_failed_filter_load_falls_back_to_lookups(store, settings):
    db = settings.storage.database
    a = spans(1)
    ResendDedup(db, 3600).insert(store, "traces", [a])
    dedup = ResendDedup(db, 3600, sole_writer=True)
    dedup.load(Cut(store, "SELECT DISTINCT hash"))
    assert dedup.filter is None
    dedup.insert(store, "traces", [a])
    assert count(store, db) == 3
