"""The score engine on chDB: exactly-once across a crash, backtest = live, trained models picked up,
feedback, cardinality guard, two shards on one store, and alerts through the real router."""

from __future__ import annotations

import json
import threading
import time

import pytest
from flows_data import T0_MS, scenario
from forewarn.flows.engine import ScoreEngine
from forewarn.flows.notify import Notifier
from forewarn.flows.runtime import Runtime

from forewarn.storage.client import connect

STEP = 10_000
BUCKETS, INCIDENT = 60, 40
END = T0_MS + BUCKETS * STEP


def engine(store, settings, run="live", **kw) -> ScoreEngine:
    eng = ScoreEngine(store, settings, run, clock=lambda: END / 1000.0, **kw)
    eng.start_at(T0_MS)
    return eng


def anomaly_keys(store, run="live", kind=None) -> set[tuple]:
    sql = "SELECT series_id, toUnixTimestamp64Milli(ts), detector FROM anomalies FINAL WHERE run = {r:String}"
    if kind:
        sql += " AND kind = {k:String}"
    return {tuple(r) for r in store.query(sql, parameters={"r": run, "k": kind or ""}).result_rows}


def small_batches(settings, n=5):
    settings.flows.max_batch_buckets = n
    return settings


def test_exactly_once_across_a_crash_and_backtest_reproduces_live(store, settings):
    scenario(store, settings.storage.database, T0_MS, BUCKETS, INCIDENT)
    small_batches(settings)
    eng = engine(store, settings)
    crashes = {5, 9}  # batches whose results are written but whose checkpoint never is

    real_commit = eng.store.commit_checkpoint
    calls = {"n": 0}

    def crashing_commit(key, *a, **kw):
        if key.endswith("/intent"):  # the batch's intent is recorded before its results
            return real_commit(key, *a, **kw)
        calls["n"] += 1
        if calls["n"] in crashes:
            raise SystemExit("killed before the checkpoint")
        real_commit(key, *a, **kw)

    batches = 0
    while True:
        eng.store.commit_checkpoint = crashing_commit
        try:
            if eng.run_once(END) is None:
                break
            batches += 1
        except SystemExit:
            eng = engine(store, settings)  # a new process: restores from the last checkpoint
            assert eng.restored
    assert calls["n"] == batches + len(crashes)

    live = anomaly_keys(store, kind="deviation")
    assert live, "the incident must produce anomalies"
    # replayed windows rewrote identical rows: FINAL holds each anomaly once
    n_final = store.command("SELECT count() FROM anomalies FINAL WHERE run = 'live'")
    n_ids = store.command("SELECT uniqExact(anomaly_id) FROM anomalies WHERE run = 'live'")
    n_raw = store.command("SELECT count() FROM anomalies WHERE run = 'live'")
    assert n_final == n_ids == n_raw  # the replayed windows' inserts were deduplicated, not just merged
    sig_final = store.command("SELECT count() FROM forewarn_signals FINAL")
    sig_distinct = store.command("SELECT uniqExact(series_id, ts) FROM forewarn_signals")
    sig_raw = store.command("SELECT count() FROM forewarn_signals")
    assert sig_final == sig_distinct == sig_raw
    assert min(ts for _, ts, _ in live) >= T0_MS + INCIDENT * STEP  # nothing before the incident

    # one incident, the right service and operation on top
    incidents = store.query(
        "SELECT incident_id, suspects, alert_labels FROM incidents FINAL WHERE run = 'live'"
    )
    assert len(incidents.result_rows) == 1, [
        (r[0], r[2], json.loads(r[1])[:3]) for r in incidents.result_rows
    ]
    labels = incidents.result_rows[0][2]
    assert labels["service"] == "db" and labels["operation"] == "SELECT orders"
    # the attribute value that carries the excess latency of the top suspect
    top = json.loads(incidents.result_rows[0][1])[0]
    assert top["attribute_values"][0]["key"] == "db.instance"
    assert (
        top["attribute_values"][0]["value"] == "replica"
        and top["attribute_values"][0]["explains"] == "latency"
    )

    # a backtest over the same data from a fresh state finds exactly the same anomalies
    rt = Runtime(settings, settings.storage_dsn)
    report = rt.backtest("bt1", T0_MS, END)
    assert anomaly_keys(store, "bt1") == anomaly_keys(store, "live")
    assert report["incidents"] == 1 and report["alerts"] >= 2  # the incident and the disk forecast
    assert report["anomalies"] == len(live)


def test_trained_model_is_picked_up_without_restart(store, settings):
    db = settings.storage.database
    scenario(store, db, T0_MS, BUCKETS, INCIDENT)
    eng = engine(store, settings)
    eng.run_until(T0_MS + INCIDENT * STEP)
    assert eng.models.versions == {}
    rt = Runtime(settings, settings.storage_dsn)
    from forewarn.flows.models import train
    from forewarn.flows.store import FlowStore

    versions = train(FlowStore(store, db), 42, T0_MS, T0_MS + INCIDENT * STEP, time.time() * 1000)
    assert set(versions) == {"iforest:api", "iforest:db", "iforest:web"}
    assert rt  # the running engine sees the new versions at its next batch
    eng.run_until(END)
    assert eng.models.versions == versions
    flagged = store.query(
        "SELECT DISTINCT service, model_version FROM anomalies FINAL WHERE detector = 'iforest'"
    ).result_rows
    assert ("web", 1) in flagged


def test_false_positive_feedback_suppresses_the_pattern(store, settings):
    """A continuing anomaly is one onset, so the mark acts on the next episodes: the same error
    burst again is suppressed, one with twice the deviation alerts."""
    from flows_data import insert_spans

    rng = __import__("random").Random(4)
    share = {b: 0.4 for b in (*range(20, 24), *range(32, 36))} | {b: 1.0 for b in range(44, 48)}
    spans = [{"ms": T0_MS + b * STEP + i * 450, "op": "GET /", "service": "web", "dur_ns": 5e6,
              "status": "Error" if rng.random() < share.get(b, 0.01) else "Ok"}
             for b in range(56) for i in range(20)]  # fmt: skip
    insert_spans(store, settings.storage.database, spans)
    eng = engine(store, settings)
    eng.run_until(T0_MS + 30 * STEP)
    first = store.query(
        "SELECT anomaly_id, series_id, detector, abs(value - expected) FROM anomalies FINAL "
        "WHERE name = 'red.error_ratio' AND service = 'web' AND empty(labels) ORDER BY ts"
    ).result_rows
    assert len(first) == 1 and first[0][2] == "coldstart"  # the burst is one anomaly, not one a bucket
    first = first[0]
    eng.store.write_feedback(
        first[0], first[1], first[2], "false_positive", "expected during the sale", time.time() * 1000
    )
    eng.run_until(T0_MS + 56 * STEP)
    later = store.query(
        "SELECT kind, abs(value - expected), toUnixTimestamp64Milli(ts) FROM anomalies FINAL "
        "WHERE series_id = {s:UInt64} AND ts > fromUnixTimestamp64Milli({t:Int64}) ORDER BY ts",
        parameters={"s": first[1], "t": T0_MS + 30 * STEP},
    ).result_rows
    # the same pattern is suppressed; only a deviation twice as large as the marked one alerts again
    assert [k for k, _, _ in later] == ["suppressed", "deviation"]
    assert (
        T0_MS + 32 * STEP
        <= later[0][2]
        < T0_MS + 36 * STEP
        <= T0_MS + 44 * STEP
        <= later[1][2]
        < T0_MS + 48 * STEP
    )
    assert later[0][1] <= 2 * first[3] < later[1][1]


def test_cardinality_guard_counts_what_exceeds_the_budget(store, settings):
    scenario(store, settings.storage.database, T0_MS, 12, 100)
    settings.flows.max_series = 10
    eng = engine(store, settings)
    reports = eng.run_until(T0_MS + 12 * STEP)
    assert store.command("SELECT count() FROM forewarn_series FINAL") == 10
    assert store.command("SELECT uniqExact(series_id) FROM forewarn_signals") == 10
    rejected = store.command("SELECT sum(rejected_series) FROM forewarn_cardinality FINAL")
    assert rejected > 0 and sum(r.rejected_series for r in reports) == rejected
    # every series is either admitted or counted: nothing vanishes silently
    unlimited = ScoreEngine(store, settings, "probe", clock=lambda: END / 1000.0)
    assert unlimited.guard.budget == 10


def test_two_shards_on_one_store_split_the_series(store, settings):
    scenario(store, settings.storage.database, T0_MS, 12, 100)
    settings.flows.shards = 2
    results: dict[int, object] = {}

    def worker(k: int) -> None:
        client = connect(settings.storage_dsn, database=settings.storage.database)
        eng = ScoreEngine(client, settings, "live", clock=lambda: END / 1000.0, shard=k, shards=2)
        eng.start_at(T0_MS)
        results[k] = eng.run_until(T0_MS + 12 * STEP)
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    by_shard = store.query(
        "SELECT cityHash64(service) % 2 AS shard, groupUniqArray(service) FROM forewarn_signals GROUP BY shard"
    ).result_rows
    services = {k: set(v) for k, v in by_shard}
    assert services[0].isdisjoint(services[1]) and services[0] | services[1] == {"api", "db", "web"}
    keys = store.query(
        "SELECT key FROM forewarn_flow_state WHERE NOT endsWith(key, '/intent') GROUP BY key ORDER BY key"
    ).result_rows
    assert [k for (k,) in keys] == ["score/live/0-of-2", "score/live/1-of-2"]
    assert all(results[k] for k in (0, 1))


@pytest.mark.parametrize("router_down_first", [True])
def test_incident_and_forecast_reach_the_webhook_through_the_router(store, settings, router_down_first):
    from forewarn.alerts.testing import RouterThread, WebhookSink

    scenario(store, settings.storage.database, T0_MS, BUCKETS, INCIDENT)
    with WebhookSink() as sink:
        config = (
            "route:\n  receiver: hook\n  group_by: [alertname, service]\n  group_wait: 0s\n"
            "  group_interval: 1s\nreceivers:\n"
            f"  - name: hook\n    webhook_configs:\n      - url: {sink.url}/hook\n"
        )
        with RouterThread(config) as router:
            notifier = Notifier(router.url if not router_down_first else "http://127.0.0.1:9")
            eng = engine(store, settings, notifier=notifier)
            eng.run_until(T0_MS + (INCIDENT + 5) * STEP, send_alerts=True)
            assert notifier.failures > 0  # the router was unreachable: nothing lost, retried below
            notifier.url = router.url
            eng.run_until(END, send_alerts=True)
            deadline = time.time() + 30
            while time.time() < deadline:
                names = {a["labels"]["alertname"] for r in sink.received("/hook") for a in r.body["alerts"]}
                if {"ForewarnIncident", "ForewarnSaturationForecast"} <= names:
                    break
                time.sleep(0.2)
    alerts = [a for r in sink.received("/hook") for a in r.body["alerts"]]
    incident = [a for a in alerts if a["labels"]["alertname"] == "ForewarnIncident"]
    assert incident and {a["labels"]["incident"] for a in incident} == {incident[0]["labels"]["incident"]}
    assert incident[0]["labels"]["service"] == "db" and incident[0]["labels"]["operation"] == "SELECT orders"
    disk = [a for a in alerts if a["labels"]["alertname"] == "ForewarnSaturationForecast"]
    assert disk[0]["labels"]["service"] == "api" and "full in" in disk[0]["annotations"]["summary"]


def test_seasonal_baseline_from_history_flags_an_hour_unusual_value(store, settings):
    import math

    from flows_data import insert_gauge
    from forewarn.flows.models import train
    from forewarn.flows.store import FlowStore

    db = settings.storage.database
    settings.flows.step_s = 600.0
    day = 86_400_000
    t0 = (int(time.time() * 1000) // day - 4) * day  # midnight UTC four days ago
    rng = __import__("random").Random(3)
    pts = []
    for i in range(4 * 144):  # four days of 10-minute points with a daily cycle
        ms = t0 + i * 600_000 + 60_000
        hour = (ms % day) / 3_600_000
        v = 100 + 50 * math.sin(2 * math.pi * hour / 24) + rng.gauss(0, 1)
        if i == 3 * 144 + 18 * 6:  # day 4, 18:00: the noon level, normal at noon, not at 18:00
            v = 150.0
        pts.append(("batch", "jobs.queue_depth", {}, ms, v))
    insert_gauge(store, db, pts)
    rt = Runtime(settings, settings.storage_dsn)
    rt.replay("history", t0, t0 + 3 * day)  # signals for the history (backfill)
    versions = train(FlowStore(store, db), 1, t0, t0 + 3 * day, time.time() * 1000)
    assert "seasonal" in versions
    eng = ScoreEngine(store, settings, "live", clock=lambda: (t0 + 4 * day) / 1000.0)
    eng.start_at(t0 + 3 * day)
    eng.run_until(t0 + 4 * day)
    hits = store.query(
        "SELECT toUnixTimestamp64Milli(ts), explanation FROM anomalies FINAL WHERE run = 'live' AND detector = 'seasonal'"
    ).result_rows
    assert [ts for ts, _ in hits] == [t0 + 3 * day + 18 * 3_600_000], hits
    assert "unusual for this hour" in hits[0][1]


def test_a_service_that_goes_silent_reads_zero_and_is_flagged(store, settings):
    from flows_data import insert_spans

    spans = [
        {"ms": T0_MS + b * STEP + i * 400, "op": "GET /", "service": svc, "dur_ns": 5e6}
        for b in range(30)
        for i in range(20)
        for svc in ("web", "api")
        if svc == "web" or b < 20  # api stops sending at bucket 20
    ]
    insert_spans(store, settings.storage.database, spans)
    eng = engine(store, settings)
    eng.run_until(T0_MS + 30 * STEP)
    rates = store.query(
        "SELECT toUnixTimestamp64Milli(ts), value FROM forewarn_signals FINAL "
        "WHERE name = 'red.rate' AND service = 'api' AND empty(labels) ORDER BY ts"
    ).result_rows
    assert len(rates) == 30 and all(v == 0.0 for _, v in rates[20:]) and rates[19][1] == 2.0
    flagged = store.query(
        "SELECT min(toUnixTimestamp64Milli(ts)) FROM anomalies FINAL WHERE service = 'api' AND name = 'red.rate'"
    ).result_rows[0][0]
    assert flagged == T0_MS + 21 * STEP  # a drop counts once it lasted flows' drop_for_s (20 s: two buckets)


@pytest.mark.parametrize(
    "scope, named",
    [("shop", "charge card"), ("@opentelemetry/instrumentation-express", "POST /order")],
    ids=["own-span", "instrumentation-step"],
)
def test_inside_one_service_the_slow_child_operation_is_named(store, settings, scope, named):
    """A user's own internal span is where the time goes and is named; the same span made by an
    instrumentation library (Express's handler span) only wraps the route, which is named."""
    from flows_data import insert_spans

    rng = __import__("random").Random(9)
    spans = []
    for b in range(40):
        for i in range(20):
            t = T0_MS + b * STEP + i * 450
            tid, sp = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
            charge = rng.lognormvariate(16, 0.2) * (6 if b >= 30 else 1)
            spans.append({"ms": t, "op": "POST /order", "service": "shop", "dur_ns": charge + 3e6,
                          "trace": tid, "span": sp})  # fmt: skip
            spans.append({"ms": t, "op": "charge card", "service": "shop", "kind": "Internal",
                          "dur_ns": charge, "trace": tid, "parent": sp, "scope": scope})  # fmt: skip
            spans.append(
                {"ms": t, "op": "GET /items", "service": "shop", "dur_ns": rng.lognormvariate(15, 0.2)}
            )
    insert_spans(store, settings.storage.database, spans)
    eng = engine(store, settings)
    eng.run_until(T0_MS + 40 * STEP)
    labels = store.query("SELECT alert_labels FROM incidents FINAL WHERE run = 'live'").result_rows
    assert [r[0]["operation"] for r in labels] == [named]


def test_a_failed_batch_is_retried_from_the_checkpoint_by_the_same_engine(store, settings):
    scenario(store, settings.storage.database, T0_MS, BUCKETS, INCIDENT)
    small_batches(settings)
    eng = engine(store, settings)
    real = eng.store.write_incidents
    fail = {"left": 2}

    def flaky(*a, **kw):
        if fail["left"] and a[0]:  # the store refuses while there are incidents to write
            fail["left"] -= 1
            raise ConnectionError("ClickHouse went away")
        return real(*a, **kw)

    eng.store.write_incidents = flaky
    errors = 0
    while True:
        try:
            if eng.run_once(END) is None:
                break
        except ConnectionError:
            errors += 1
            eng.store.write_incidents = flaky  # the reloaded engine keeps its store object
    assert errors == 2
    Runtime(settings, settings.storage_dsn).replay("clean", T0_MS, END)
    assert anomaly_keys(store, "live") == anomaly_keys(store, "clean")
    assert store.command("SELECT count() FROM anomalies WHERE run = 'live'") == len(
        anomaly_keys(store, "live")
    )


def test_feedback_api_lists_and_marks_anomalies(store, settings):
    import asyncio

    import httpx
    from forewarn.flows.service import FlowsService

    from forewarn.net import free_port

    scenario(store, settings.storage.database, T0_MS, BUCKETS, INCIDENT)
    engine(store, settings).run_until(END)
    s = settings.model_copy(deep=True)
    s.flows.orchestrator, s.flows.api_listen = "inline", f"127.0.0.1:{free_port()}"
    s.alerts.api_tokens = ["s3cret"]

    async def main() -> tuple:
        svc = FlowsService(s, s.storage_dsn, None)
        await svc.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://{s.flows.api_listen}", timeout=30) as c:
                denied = await c.get("/api/v1/anomalies")
                auth = {"Authorization": "Bearer s3cret"}
                listed = (await c.get("/api/v1/anomalies", params={"limit": 3}, headers=auth)).json()
                aid = listed[0]["anomaly_id"]
                bad = await c.post(f"/api/v1/anomalies/{aid}/feedback", json={"label": "nope"}, headers=auth)
                missing = await c.post(
                    "/api/v1/anomalies/1/feedback", json={"label": "false_positive"}, headers=auth
                )
                ok = await c.post(f"/api/v1/anomalies/{aid}/feedback", json={"label": "false_positive", "note": "x"},
                                  headers=auth)  # fmt: skip
                return denied.status_code, listed, bad.status_code, missing.status_code, ok.json()
        finally:
            await svc.stop()

    denied, listed, bad, missing, ok = asyncio.run(main())
    assert denied == 401 and len(listed) == 3 and bad == 400 and missing == 404
    assert ok["label"] == "false_positive"
    marked = store.query("SELECT toString(anomaly_id), label, note FROM forewarn_feedback").result_rows
    assert marked == [(listed[0]["anomaly_id"], "false_positive", "x")]
