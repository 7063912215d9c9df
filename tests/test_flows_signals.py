"""Signals computed in ClickHouse match values computed independently here from the raw points."""

from __future__ import annotations

import random

import numpy as np
import pytest
from flows_data import T0_MS, dt, insert_gauge, insert_histogram, insert_logs, insert_spans, insert_sum
from forewarn.flows.logmining import LogMiner, fetch_logs, mine_window
from forewarn.flows.signals import SignalQueries, Window, compute_signals

STEP = 10_000


def _by(df, name, service, labels=None):
    sel = df[(df["name"] == name) & (df["service"] == service)]
    if labels is not None:
        sel = sel[[lab == labels for lab in sel["labels"]]]
    return dict(zip(sel["ts"], sel["value"], strict=True))


def test_metric_signals(store, settings):
    db = settings.storage.database
    insert_gauge(store, db, [("api", "mem", {"host": "a"}, T0_MS + i * 2500, float(i)) for i in range(12)])
    insert_gauge(store, db, [("api", "process.memory.usage", {}, T0_MS + i * 5000, 1e8) for i in range(12)])
    insert_gauge(store, db, [("gosvc", "go.memory.used", {"go.memory.type": "other"}, T0_MS + i * 5000, 1e8)
                             for i in range(12)])  # fmt: skip
    # cumulative counter sampled every 5 s with a reset at i == 6; rate per bucket = increase / elapsed
    cum = [0, 10, 30, 60, 100, 150, 5, 25, 55, 95, 145, 205]
    insert_sum(
        store,
        db,
        [
            ("api", "req", {}, T0_MS - 5000, T0_MS + i * 5000, float(v), 2, True)
            for i, v in enumerate(cum[:6])
        ],
    )
    insert_sum(
        store,
        db,
        [
            ("api", "req", {}, T0_MS + 27_000, T0_MS + i * 5000, float(v), 2, True)
            for i, v in enumerate(cum)
            if i >= 6
        ],
    )
    # delta counter: 3 per second
    insert_sum(
        store,
        db,
        [("api", "bytes", {}, T0_MS + (i - 1) * 5000, T0_MS + i * 5000, 15.0, 1, True) for i in range(12)],
    )
    # cumulative histogram: second interval adds 10 observations in (10, 20]
    b = [10.0, 20.0, 50.0]
    insert_histogram(
        store,
        db,
        [
            ("api", "lat", T0_MS - 1000, T0_MS + 1000, 5, [5, 0, 0, 0], b, 2),
            ("api", "lat", T0_MS - 1000, T0_MS + 6000, 15, [5, 10, 0, 0], b, 2),
        ],
    )
    w = Window(T0_MS, T0_MS + 6 * STEP, STEP)
    sig, _ = compute_signals(SignalQueries(store, db), w)

    assert _by(sig, "mem", "api", {"host": "a"}) == {T0_MS + k * STEP: float(4 * k + 3) for k in range(3)}
    # a process's resident memory is family "memory" (cold start looks for a leak); other gauges are not
    fam = dict(zip(sig["name"], sig["family"], strict=False))
    assert (
        fam["process.memory.usage"] == "memory"
        and fam["go.memory.used"] == "memory"
        and fam["mem"] == "gauge"
    )
    rates = _by(sig, "req:rate", "api")
    # bucket 0: the first point has no predecessor; then +10 over 5 s
    assert rates[T0_MS] == pytest.approx(10 / 5)
    assert rates[T0_MS + STEP] == pytest.approx((20 + 30) / 10)
    # bucket 2 holds i=4 (+40) and i=5 (+50)
    assert rates[T0_MS + 2 * STEP] == pytest.approx(90 / 10)
    # bucket 3: i=6 reset (value 5 since start at 27 s -> elapsed 3 s) and i=7 (+20 over 5 s)
    assert rates[T0_MS + 3 * STEP] == pytest.approx((5 + 20) / (3 + 5))
    assert all(v == pytest.approx(3.0) for v in _by(sig, "bytes:rate", "api").values())
    p50 = _by(sig, "lat:p50", "api")
    assert p50[T0_MS] == pytest.approx(10 + 10 * 5 / 10)  # only the delta (0,10,0,0) counts
    assert _by(sig, "lat:p95", "api")[T0_MS] == pytest.approx(10 + 10 * 9.5 / 10)
    assert _by(sig, "lat:rate", "api")[T0_MS] == pytest.approx(10 / 5)


def test_red_signals_match_numpy(store, settings):
    db = settings.storage.database
    rng = random.Random(1)
    spans, raw = [], {}
    for _i in range(600):
        ms = T0_MS + rng.random() * 3 * STEP
        op = rng.choice(["GET /a", "POST /b"])
        dur = rng.lognormvariate(17, 0.5)
        err = rng.random() < 0.1
        spans.append(
            {"ms": ms, "op": op, "service": "web", "dur_ns": dur, "status": "Error" if err else "Ok"}
        )
        raw.setdefault((int(ms // STEP * STEP), op), []).append((int(dur) / 1e6, err))
    insert_spans(store, db, spans)
    sig, _ = compute_signals(SignalQueries(store, db), Window(T0_MS, T0_MS + 3 * STEP, STEP))
    for (ts, op), vals in raw.items():
        d = np.array([v for v, _ in vals])
        lab = {"operation": op, "span.kind": "server"}
        assert _by(sig, "red.rate", "web", lab)[ts] == pytest.approx(len(vals) / 10)
        assert _by(sig, "red.error_ratio", "web", lab)[ts] == pytest.approx(
            sum(e for _, e in vals) / len(vals)
        )
        assert _by(sig, "red.p95", "web", lab)[ts] == pytest.approx(np.percentile(d, 95), rel=1e-9)
    svc = {ts: [] for ts, _ in raw}
    for (ts, _), vals in raw.items():
        svc[ts] += [v for v, _ in vals]
    for ts, d in svc.items():
        assert _by(sig, "red.p99", "web", {})[ts] == pytest.approx(np.percentile(d, 99), rel=1e-9)


def test_latency_distribution_shift(store, settings):
    db = settings.storage.database
    q = SignalQueries(store, db)
    rng = random.Random(2)
    # 20 steady buckets, then a bimodal split: a third of the requests 8x slower, median barely
    # moves; from bucket 24 on, back to normal
    spans = []
    for b in range(32):
        for _ in range(80):
            slow = 20 <= b < 24 and rng.random() < 0.3
            spans.append(
                {
                    "ms": T0_MS + b * STEP + rng.random() * STEP,
                    "op": "x",
                    "service": "s",
                    "dur_ns": rng.lognormvariate(16, 0.2) * (8 if slow else 1),
                }
            )
    insert_spans(store, db, spans)
    shifts = {}
    for b in range(32):  # one bucket per batch: the baseline comes from the stored histograms
        w = Window(T0_MS + b * STEP, T0_MS + (b + 1) * STEP, STEP)
        sig, hist = compute_signals(q, w)
        store.insert(
            "forewarn_latency_hist",
            [[r.service, dt(r.ts), list(map(int, r.bins))] for r in hist.itertuples()],
            column_names=["service", "ts", "bins"],
            database=db,
        )
        shifts.update(_by(sig, "latency.shift", "s"))
    before = [shifts[T0_MS + b * STEP] for b in range(5, 20)]
    after = [shifts[T0_MS + b * STEP] for b in range(20, 24)]
    assert min(after) > 3 * max(before)
    # back to normal with the slow buckets still in the baseline: faster than it, not a shift
    assert max(shifts[T0_MS + b * STEP] for b in range(24, 32)) <= max(before)


def test_log_templates_and_rates(store, settings):
    db = settings.storage.database
    logs = [("pay", T0_MS + i * 100, 9, f"charged card {1000 + i} amount {i}.5 EUR") for i in range(50)]
    logs += [("pay", T0_MS + STEP + i * 100, 17, f"timeout calling bank after {i} ms") for i in range(20)]
    insert_logs(store, db, logs)
    q = SignalQueries(store, db)
    w = Window(T0_MS, T0_MS + 2 * STEP, STEP)
    miner = LogMiner()
    sig, records, first = mine_window(miner, fetch_logs(q, w), w)
    assert len(records) == 70 and records["template_id"].nunique() == 2
    assert sorted(first["template"]) == [
        "charged card <NUM> amount <NUM> EUR",
        "timeout calling bank after <NUM> ms",
    ]
    assert _by(sig, "log.rate", "pay") == {T0_MS: 5.0, T0_MS + STEP: 2.0}
    assert _by(sig, "log.error_rate", "pay") == {T0_MS: 0.0, T0_MS + STEP: 2.0}
    assert _by(sig, "log.new_templates", "pay") == {T0_MS: 1.0, T0_MS + STEP: 1.0}
    # a restored miner assigns the same ids and creates nothing new on a replay
    again = LogMiner.from_state(miner.state())
    _sig2, rec2, first2 = mine_window(again, fetch_logs(q, w), w)
    assert list(rec2["template_id"]) == list(records["template_id"]) and first2.empty


def test_exponential_histogram_percentiles(store, settings):
    db = settings.storage.database
    # scale 0: base 2, bucket i (offset 3) covers (2^(3+i), 2^(4+i)]; delta points, 10 s apart
    cols = ["ServiceName", "MetricName", "StartTimeUnix", "TimeUnix", "Count", "Scale", "ZeroCount",
            "PositiveOffset", "PositiveBucketCounts", "AggregationTemporality"]  # fmt: skip
    rows = [["api", "rt", dt(T0_MS - 10_000), dt(T0_MS + 5000), 10, 0, 0, 3, [0, 10, 0], 1]]
    store.insert("otel_metrics_exponential_histogram", rows, column_names=cols, database=db)
    sig, _ = compute_signals(SignalQueries(store, db), Window(T0_MS, T0_MS + STEP, STEP))
    # all ten observations in (16, 32]: the median interpolates to 24, the rate is 10 over 15 s
    assert _by(sig, "rt:p50", "api")[T0_MS] == pytest.approx(24.0)
    assert _by(sig, "rt:rate", "api")[T0_MS] == pytest.approx(10 / 15)


def test_filesystem_usage_by_state_becomes_utilization(store, settings):
    db = settings.storage.database
    pts = []
    for i, used in enumerate((40.0, 50.0, 60.0)):
        for state, v in (("used", used), ("free", 100.0 - used - 5), ("reserved", 5.0)):
            attrs = {"device": "/dev/sda1", "mountpoint": "/", "state": state}
            pts.append(
                (
                    "host",
                    "system.filesystem.usage",
                    attrs,
                    T0_MS - 60_000,
                    T0_MS + i * STEP + 100,
                    v,
                    2,
                    False,
                )
            )
    insert_sum(store, db, pts)
    sig, _ = compute_signals(SignalQueries(store, db), Window(T0_MS, T0_MS + 3 * STEP, STEP))
    util = _by(sig, "system.filesystem.utilization", "host", {"device": "/dev/sda1", "mountpoint": "/"})
    assert util == {T0_MS: 0.4, T0_MS + STEP: 0.5, T0_MS + 2 * STEP: 0.6}
