"""SLIs on the real embedded store: good/total per bucket from stored spans, histograms and
counters, checked against counts worked out by hand, and the window sums the alerts read."""

from __future__ import annotations

import time

from flows_data import insert_histogram, insert_spans, insert_sum
from forewarn.flows.slo import SLOEngine
from forewarn.flows.slo_spec import SLO, TimeWindow, parse_selector
from forewarn.flows.slo_store import SLOStore

MIN = 60_000
# a minute-aligned instant one hour ago (inside every table's TTL)
T0 = int(time.time() - 3600) // 60 * MIN


def _spans(store, db):
    # minute 0: checkout /pay 10 spans, 2 errors, durations 100..1000 ms; a client span and a
    # child span that must not count; minute 1: 4 spans of /cart, 1 error; other service noise
    spans = []
    for i in range(10):
        spans.append({"ms": T0 + i * 1000, "op": "POST /pay", "service": "checkout", "dur_ns": (i + 1) * 100_000_000,
                      "status": "Error" if i in (3, 7) else "Unset", "attrs": {"http.route": "/pay"}})  # fmt: skip
    spans.append({"ms": T0 + 500, "op": "POST /pay", "service": "checkout", "dur_ns": 5, "kind": "Client",
                  "parent": "ab" * 8, "status": "Error"})  # fmt: skip
    spans.append({"ms": T0 + 600, "op": "SELECT", "service": "checkout", "dur_ns": 5, "kind": "Internal",
                  "parent": "cd" * 8})  # fmt: skip
    for i in range(4):
        spans.append({"ms": T0 + MIN + i * 1000, "op": "GET /cart", "service": "checkout", "dur_ns": 50_000_000,
                      "status": "Error" if i == 0 else "Ok", "attrs": {"http.route": "/cart"}})  # fmt: skip
    spans.append({"ms": T0 + 1000, "op": "GET /", "service": "web", "dur_ns": 1, "status": "Error"})
    insert_spans(store, db, spans)


def test_span_counts_per_bucket_match_hand_counts(settings, store):
    db = settings.storage.database
    _spans(store, db)
    s = SLOStore(store, db)
    count = lambda q: s.counts(parse_selector(q), T0, T0 + 2 * MIN, MIN)  # noqa: E731
    assert count('spans{service="checkout"}') == {T0: 10.0, T0 + MIN: 4.0}
    assert count('spans{service="checkout", status="error"}') == {T0: 2.0, T0 + MIN: 1.0}
    assert count('spans{service="checkout", route="/pay", status!="error"}') == {T0: 8.0}
    # latency: at most 0.3 s -> 100, 200, 300 ms of /pay, and all four /cart spans
    assert count('spans_bucket{service="checkout", le="0.3"}') == {T0: 3.0, T0 + MIN: 4.0}
    assert count('spans{job="checkout", route=~"/ca.*"}') == {T0 + MIN: 4.0}


def _histograms(store, db):
    b = [0.1, 0.25, 0.5, 1.0]
    m = "http.server.request.duration"
    insert_histogram(store, db, [
        # cumulative, one series: start, +10 (6 under 0.25) in minute 0, +5 (5 under 0.25) in minute 1
        ("api", m, T0 - 5 * MIN, T0 - MIN, 100, [50, 30, 10, 5, 5], b, 2),
        ("api", m, T0 - 5 * MIN, T0 + 30_000, 110, [52, 34, 12, 6, 6], b, 2),
        ("api", m, T0 - 5 * MIN, T0 + 90_000, 115, [55, 36, 12, 6, 6], b, 2),
        # delta temporality, another service
        ("web", m, T0, T0 + 10_000, 7, [1, 2, 3, 1, 0], b, 1),
    ])  # fmt: skip


def test_histogram_counts_are_per_interval_increases(settings, store):
    db = settings.storage.database
    _histograms(store, db)
    s = SLOStore(store, db)
    count = lambda q: s.counts(parse_selector(q), T0, T0 + 2 * MIN, MIN)  # noqa: E731
    assert count('http_server_request_duration_seconds_count{service="api"}') == {T0: 10.0, T0 + MIN: 5.0}
    assert count('http_server_request_duration_seconds_bucket{service="api", le="0.25"}') == {
        T0: 6.0,
        T0 + MIN: 5.0,
    }
    assert count('http_server_request_duration_count{job="web"}') == {T0: 7.0}
    assert count('http_server_request_duration_bucket{job="web", le="0.5"}') == {T0: 6.0}


def test_exponential_histograms_count_too(settings, store):
    from flows_data import dt

    db = settings.storage.database
    # scale 0: bucket i of offset 0 covers (2^i, 2^(i+1)]; delta points of 9 observations:
    # 1 in the zero bucket, 3 in (1, 2], 4 in (2, 4], 1 in (4, 8]
    cols = ["ServiceName", "MetricName", "Attributes", "StartTimeUnix", "TimeUnix", "Count", "Scale", "ZeroCount",
            "PositiveOffset", "PositiveBucketCounts", "AggregationTemporality"]  # fmt: skip
    rows = [["api", "rpc.server.duration", {}, dt(T0), dt(T0 + 1000), 9, 0, 1, 0, [3, 4, 1], 1]]
    store.insert("otel_metrics_exponential_histogram", rows, column_names=cols, database=db)
    s = SLOStore(store, db)
    count = lambda q: s.counts(parse_selector(q), T0, T0 + MIN, MIN)  # noqa: E731
    assert count('rpc_server_duration_count{service="api"}') == {T0: 9.0}
    assert count('rpc_server_duration_bucket{service="api", le="4"}') == {T0: 8.0}


def test_counter_ratio(settings, store):
    db = settings.storage.database
    insert_sum(store, db, [
        ("api", "http.requests", {"code": "200"}, T0 - 9 * MIN, T0 - MIN, 100.0, 2, True),
        ("api", "http.requests", {"code": "200"}, T0 - 9 * MIN, T0 + 1000, 190.0, 2, True),
        ("api", "http.requests", {"code": "500"}, T0 - 9 * MIN, T0 - MIN, 5.0, 2, True),
        ("api", "http.requests", {"code": "500"}, T0 - 9 * MIN, T0 + 1000, 15.0, 2, True),
    ])  # fmt: skip
    s = SLOStore(store, db)
    assert s.counts(
        parse_selector('sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))'), T0, T0 + MIN, MIN
    ) == {T0: 10.0}
    assert s.counts(parse_selector("http_requests_total"), T0, T0 + MIN, MIN) == {T0: 100.0}


def test_engine_buckets_and_window_sli(settings, store):
    db = settings.storage.database
    _spans(store, db)
    slo = SLO("checkout", "availability", 0.9, total=parse_selector('spans{service="checkout"}'),
              bad=parse_selector('spans{service="checkout", status="error"}'), window=TimeWindow(7))  # fmt: skip
    eng = SLOEngine(store, settings, [slo], clock=lambda: (T0 + 10 * MIN) / 1000, forecast=False)
    eng.start_at(T0 - 5 * MIN)
    out = eng.run_until(T0 + 10 * MIN)
    st = out[-1][slo.id]
    assert (st.good, st.total) == (11.0, 14.0)
    assert abs(st.sli - 11 / 14) < 1e-12
    # 3 bad of 14 against a 10 % budget: 3 / 1.4 of it spent
    assert abs(st.budget_remaining - (1 - 3 / 1.4)) < 1e-12
    # the 5-minute window at T0+10 min holds nothing; the 1 h window all of it
    assert st.burn[300] != st.burn[300]  # nan: no events
    assert abs(st.burn[3600] - (3 / 14) / 0.1) < 1e-12
    # a restart resumes from the checkpoint and counts nothing twice
    again = SLOEngine(store, settings, [slo], clock=lambda: (T0 + 10 * MIN) / 1000, forecast=False)
    assert again.run_until(T0 + 10 * MIN) == []
    assert again.evaluate([slo])[slo.id].total == 14.0
