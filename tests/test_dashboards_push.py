"""``forewarn grafana push`` against a local server that follows Grafana's documented HTTP API
(tests/grafana_fake.py): Grafana itself cannot be installed here. The real grafana-client talks
to it over HTTP on 127.0.0.1; anomalies and incidents are written through the flows' store API,
remediation rows in the audit table's layout."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from forewarn.alerts.remediation.audit import AUDIT_TABLE, COLUMNS, to_row
from forewarn.dashboards.build import FOLDER_UID, ROUTER_DATASOURCE_UID, load_dashboards
from forewarn.dashboards.cli import clickhouse_for_grafana
from forewarn.dashboards.panels import DATASOURCE_UID
from forewarn.dashboards.push import GrafanaPush, PushError
from forewarn.flows.store import FlowStore
from grafana_fake import FakeGrafana
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.net import free_port

TOKEN = "glsa_forewarn_test"


@pytest.fixture
def grafana():
    g = FakeGrafana(TOKEN)
    url = g.start(free_port())
    yield g, url
    g.stop()


def _dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _anomaly(i: int, ms: int) -> dict:
    return {
        "anomaly_id": 1000 + i, "run": "live", "ts": _dt(ms), "detected_at": _dt(time.time() * 1000), "series_id": 7,
        "name": "red.p95", "service": "payments", "labels": {}, "value": 480.0, "expected": 60.0, "score": 0.9999,
        "detector": "ensemble:spike", "kind": "deviation", "explanation": "spike: 480 is above the expected 40–80",
        "incident_id": 55, "model_version": 0,
    }  # fmt: skip


def _write_events(store, db: str, now_ms: int, n_anomalies: int = 3) -> None:
    fs = FlowStore(store, db)
    fs.write_anomalies(
        [_anomaly(i, now_ms - 600_000 + i * 10_000) for i in range(n_anomalies)], f"t{n_anomalies}"
    )
    fs.write_incidents(
        [
            {
                "incident_id": 55, "run": "live", "started_at": _dt(now_ms - 600_000), "updated_at": _dt(now_ms - 500_000),
                "services": ["payments", "checkout"], "anomalies": n_anomalies,
                "suspects": json.dumps([{"service": "payments", "operation": "POST /charge"}]),
                "alert_labels": {"alertname": "ForewarnIncident"}, "resolved": False,
            }
        ],
        "inc",
    )  # fmt: skip
    ev = {
        "hook": "restart-pod",
        "action_id": "a1",
        "labels": {"service": "payments"},
        "ts": (now_ms - 400_000) / 1000,
    }
    rows = [to_row(1, {**ev, "event": "attempt", "outcome": "success", "latency_ms": 80.0}),
            to_row(2, {**ev, "event": "succeeded", "outcome": "succeeded"})]  # fmt: skip
    store.insert(AUDIT_TABLE, rows, column_names=COLUMNS, database=db)


def _datasources():
    ch = clickhouse_for_grafana("chdb:///x", "https://reader:s3cret@ch.internal:8443", None, None, "otel")
    return [ch, {"name": "forewarn router", "uid": ROUTER_DATASOURCE_UID, "type": "alertmanager", "access": "proxy",
                 "url": "http://127.0.0.1:9093", "jsonData": {"implementation": "prometheus"}}]  # fmt: skip


def test_push_upserts_everything_and_is_idempotent(grafana, store, settings):
    fake, url = grafana
    now = int(time.time() * 1000)
    _write_events(store, settings.storage.database, now)
    dashboards = load_dashboards()
    pusher = GrafanaPush(url, TOKEN)

    rep = pusher.push(dashboards, _datasources(), store, now - 3_600_000, now + 60_000)
    assert rep.grafana_version == "11.6.0"
    assert rep.datasources == {DATASOURCE_UID: "created", ROUTER_DATASOURCE_UID: "created"}
    assert set(rep.dashboards) == {d["uid"] for d in dashboards}
    assert rep.annotations == {"anomaly": 3, "incident": 1, "remediation": 1} and rep.skipped == 0
    ch = fake.datasources[DATASOURCE_UID]
    assert ch["jsonData"]["host"] == "ch.internal" and ch["jsonData"]["secure"] is True
    assert ch["jsonData"]["username"] == "reader" and ch["secureJsonFields"] == {"password": True}
    assert FOLDER_UID in fake.folders
    for d in dashboards:
        stored = fake.dashboards[d["uid"]]
        assert stored["folderUid"] == FOLDER_UID
        assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == {
            k: v for k, v in d.items() if k not in ("id", "version")
        }
    anomaly = next(a for a in fake.annotations if "anomaly" in a["tags"])
    assert "service:payments" in anomaly["tags"] and "payments · red.p95" in anomaly["text"]
    incident = next(a for a in fake.annotations if "incident" in a["tags"])
    assert incident["timeEnd"] - incident["time"] == 100_000

    # Second push: same objects updated in place, no annotation written twice.
    rep2 = GrafanaPush(url, TOKEN).push(dashboards, _datasources(), store, now - 3_600_000, now + 60_000)
    assert rep2.datasources == {DATASOURCE_UID: "updated", ROUTER_DATASOURCE_UID: "updated"}
    assert rep2.annotations == {"anomaly": 0, "incident": 0, "remediation": 0} and rep2.skipped == 5
    assert fake.datasources[DATASOURCE_UID]["version"] == 2
    assert all(fake.dashboards[d["uid"]]["version"] == 2 for d in dashboards)
    assert len(fake.annotations) == 5

    # New events since: only they are written (what --follow does every round).
    _write_events(store, settings.storage.database, now, n_anomalies=4)
    rep3 = GrafanaPush(url, TOKEN).push_annotations(store, now - 3_600_000, int(time.time() * 1000))
    assert rep3.annotations == {"anomaly": 1, "incident": 0, "remediation": 0}


def test_bad_token_and_unreachable_grafana_are_clear_errors(grafana):
    fake, url = grafana
    with pytest.raises(
        PushError, match=r"POST /api/datasources|GET /api/datasources/uid/.*401.*invalid API key"
    ):
        GrafanaPush(url, "wrong").push(load_dashboards(), _datasources())
    assert not fake.dashboards
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PushError, match="GET /api/health"):
        GrafanaPush(dead, TOKEN, timeout=2).push(load_dashboards(), _datasources())


def test_cli_push(grafana, store, settings):
    fake, url = grafana
    _write_events(store, settings.storage.database, int(time.time() * 1000))
    env = {"FOREWARN_STORAGE__DSN": settings.storage_dsn, "FOREWARN_STORAGE__DATABASE": settings.storage.database,
           "FOREWARN_GRAFANA_TOKEN": TOKEN, "FOREWARN_CLICKHOUSE_HTTP__PORT": "8123"}  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(
        app, ["grafana", "push", "--url", url, "--clickhouse-url", "http://ch:8123", "--since", "2h"], env=env
    )
    assert res.exit_code == 0, res.output
    assert "dashboard forewarn-service-overview: http://127.0.0.1" in res.output
    assert "annotations written: anomaly 3, incident 1, remediation 1" in res.output
    assert len(fake.dashboards) == 5
    # An embedded store: Grafana reads it through forewarn's ClickHouse HTTP interface, as the
    # read-only default user; with the interface off, say so instead of provisioning a broken one.
    res = runner.invoke(app, ["grafana", "push", "--url", url], env=env)
    assert res.exit_code == 0, res.output
    ds = fake.datasources["forewarn-clickhouse"]["jsonData"]
    assert (ds["host"], ds["port"], ds["protocol"], ds["username"]) == ("127.0.0.1", 8123, "http", "default")
    res = runner.invoke(
        app, ["grafana", "push", "--url", url], env={**env, "FOREWARN_CLICKHOUSE_HTTP__PORT": "0"}
    )
    assert res.exit_code == 2 and "--clickhouse-url" in res.output and "interface is off" in res.output
    res = runner.invoke(
        app, ["grafana", "push", "--url", url, "--clickhouse-url", "ftp://u:hunter2@ch:21"], env=env
    )
    assert res.exit_code == 2 and "ftp://u:***@ch:21" in res.output and "hunter2" not in res.output
    res = runner.invoke(
        app,
        ["grafana", "push", "--url", url, "--clickhouse-url", "http://ch:8123", "--since", "soon"],
        env=env,
    )
    assert res.exit_code == 2 and "not a duration" in res.output


def test_follow_writes_new_annotations_as_they_happen(grafana, store, settings):
    import threading

    fake, url = grafana
    now = int(time.time() * 1000)
    pusher = GrafanaPush(url, TOKEN)
    stop = threading.Event()
    rounds: list[dict] = []
    t = threading.Thread(
        target=pusher.follow, args=(store, now - 3_600_000, 0.2, stop, lambda r: rounds.append(r.annotations))
    )
    t.start()
    try:
        _write_events(store, settings.storage.database, now, n_anomalies=2)
        deadline = time.time() + 30
        while sum(1 for a in fake.annotations if "anomaly" in a["tags"]) < 2 and time.time() < deadline:
            time.sleep(0.1)
        _write_events(store, settings.storage.database, now, n_anomalies=3)  # one more anomaly
        while sum(1 for a in fake.annotations if "anomaly" in a["tags"]) < 3 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(10)
    tags = [a["tags"][-1] for a in fake.annotations]
    assert len(tags) == len(set(tags)), "an event was annotated twice"
    assert sum(1 for a in fake.annotations if "anomaly" in a["tags"]) == 3
    assert sum(r.get("anomaly", 0) for r in rounds) == 3


def test_push_includes_a_dashboard_per_slo(grafana, store, settings, tmp_path):
    """With slo.dir set, `forewarn grafana push` adds one dashboard per SLO to the five."""
    from test_slo_cli import SLO_FILE

    fake, url = grafana
    d = tmp_path / "slos"
    d.mkdir()
    (d / "api.yaml").write_text(SLO_FILE)
    env = {"FOREWARN_STORAGE__DSN": settings.storage_dsn, "FOREWARN_STORAGE__DATABASE": settings.storage.database,
           "FOREWARN_GRAFANA_TOKEN": TOKEN, "FOREWARN_SLO__DIR": str(d)}  # fmt: skip
    res = CliRunner().invoke(
        app,
        ["grafana", "push", "--url", url, "--clickhouse-url", "http://ch:8123", "--no-annotations"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert "dashboard forewarn-slo-api-availability: http://127.0.0.1" in res.output
    assert len(fake.dashboards) == 6
    assert fake.dashboards["forewarn-slo-api-availability"]["dashboard"]["title"] == "SLO · api availability"
