"""The test bed itself (forewarn.testbed): real services under the real OpenTelemetry
auto-instrumentation send what a user's services send into a real collector, and each fault
switch changes what it should; plus the judge's rules on hand-made notification streams.

The end-to-end "each fault gives one incident" run is at the bottom, skipped until the flows
are rebuilt (it fails on today's flows): FOREWARN_TESTBED_E2E=1 runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_support import RunningCollector
from forewarn.alerts.config import load_config
from forewarn.collector.clickhouse_exporter import ClickHouseExporter

from forewarn.config import load_settings
from forewarn.storage import open_storage
from forewarn.testbed import node
from forewarn.testbed.control import Control
from forewarn.testbed.fleet import Fleet, OtelOptions
from forewarn.testbed.judge import judge
from forewarn.testbed.run import alertmanager_config, scaled_forewarn_env
from forewarn.testbed.timeline import Event, Scenario, control_state

# -- pure: scenarios, the control file, the judge ----------------------------------------------------


def page(t: float, service: str, status: str = "firing", incident: str = "1", name: str = "ForewarnIncident"):
    labels = {"alertname": name, "service": service, "incident": incident}
    if service == "catalog":  # the disk fault's pages name the filesystem, as forewarn's forecasts do
        labels["signal"] = "system.filesystem.utilization"
    return (t, {"alerts": [{"status": status, "labels": labels}]})


def perfect_run(s: Scenario) -> list[tuple[float, dict]]:
    """One page per fault 20 s after onset (the disk's 3 min before 95 %), resolved 30 s after it ends."""
    notes = []
    for k, e in enumerate(s.faults):
        first = e.deadline_s(180) if e.kind == "disk_fill" else e.at_s + 20
        notes += [page(first, e.service, incident=str(k)), page(e.end_s + 30, e.service, "resolved", str(k))]
    return notes


def test_judge_passes_a_perfect_run_and_names_each_failure() -> None:
    s = Scenario.preset("full")
    assert judge(s, perfect_run(s), 0.0, {}).passed
    bad = perfect_run(s)
    bad.append(page(500, "checkout", incident="dup"))  # a second incident for the error burst
    bad.append(page(160, "frontend", incident="surge"))  # a page for the promotion
    a0 = lambda n: n[1]["alerts"][0]  # noqa: E731
    bad = [n for n in bad if not (a0(n)["labels"]["incident"] == "0" and a0(n)["status"] == "resolved")]
    v = judge(s, bad, 0.0, {})
    why = {r.event.kind: r.reasons for r in v.rows}
    assert why["error_burst"] == ["2 incidents for one fault", "never resolved"]  # the duplicate
    assert why["slow_dependency"] == ["never resolved"]
    assert [f.context.split(" ")[0] for f in v.false_pages] == ["surge"]
    assert not v.passed
    assert "FAIL" in v.table() and "surge" in v.table()


def test_judge_wrong_service_late_page_and_late_disk_warning() -> None:
    s = Scenario.preset("full")
    notes = perfect_run(s)
    notes = [n for n in notes if n[1]["alerts"][0]["labels"]["service"] not in ("frontend", "catalog")]
    notes += [
        page(610, "payments", incident="o"),
        page(700, "payments", "resolved", "o"),
    ]  # outage named wrong
    disk = next(e for e in s.events if e.kind == "disk_fill")
    notes += [page(disk.crosses_s(0.95) + 90, "catalog", incident="d", name="ForewarnSaturationForecast")]
    notes += [page(disk.end_s + 60, "catalog", "resolved", "d", "ForewarnSaturationForecast")]
    v = judge(s, notes, 0.0, {})
    why = {r.event.kind: r.reasons for r in v.rows}
    assert why["upstream_outage"] == ["wrong service: payments"]
    assert why["disk_fill"] == ["warned +90s from 95 % (needs <= -120s)"]
    late = judge(s, [page(390 + 75, "payments"), page(470, "payments", "resolved")], 0.0, {})
    assert late.rows[0].reasons == ["paged 75s after onset (> 60s)"]


def test_judge_reads_wall_time_through_the_scale() -> None:
    s = Scenario.preset("ci")  # scale 0.2: 20 virtual seconds are 4 wall seconds
    start = 1_000_000.0
    notes = [(start + t * s.scale, body) for t, body in perfect_run(s)]
    assert judge(s, notes, start, {}).passed


def test_control_state_switches_every_fault_and_the_traffic_shape() -> None:
    s = Scenario.preset("extended")
    at = {e.kind: e for e in s.events}
    st = lambda kind, dt=1.0: control_state(s, at[kind].at_s + dt, 1000.0)  # noqa: E731
    assert st("slow_dependency")["services"]["payments"]["latency"] == {"POST /charge": 5.0}
    assert st("error_burst")["services"]["checkout"]["error_ratio"] == 0.35
    assert st("upstream_outage")["traffic"]["drop"] == 0.8
    assert st("log_burst")["services"]["inventory"]["log_burst_per_s"] == 25
    disk = st("disk_fill")["services"]["catalog"]["disk"]
    assert disk["start"] == 1000.0 + 420 and disk["duration_s"] == 360 and disk["to"] == 1.0
    assert st("memory_leak")["services"]["checkout"]["leak_mb_per_s"] == 1.5
    assert st("cascade")["services"]["catalog"]["db_delay_ms"] == 120
    assert st("surge", 60)["traffic"]["multiplier"] > 2.5
    assert "services" not in control_state(s, 50, 0) and control_state(s, 50, 0)["traffic"]["routes"] == []
    assert st("deploy")["services"]["payments"]["deploy"]["latency"] == {"POST /charge": 1.1}
    after = control_state(s, at["log_burst"].end_s + 1, 0)
    assert "inventory" not in after.get("services", {})
    # scaling: the disk fills in the same number of buckets, the leak grows to the same size
    ci = Scenario.preset("ci")
    d = next(e for e in ci.events if e.kind == "disk_fill")
    assert control_state(ci, d.at_s + 1, 0)["services"]["catalog"]["disk"]["duration_s"] == 72


def test_runner_configs_are_what_forewarn_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = scaled_forewarn_env(0.25)
    assert (
        env["FOREWARN_FLOWS__STEP_S"] == "2.5" and env["FOREWARN_FLOWS__LATENESS_S"] == "3"
    )  # not below the SDKs' export delay
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.flows.step_s == 2.5 and s.flows.resolve_after_s == 30
    cfg = tmp_path / "am.yml"
    cfg.write_text(alertmanager_config("http://127.0.0.1:9", 0.2))
    route = load_config(cfg).route
    assert route.receiver == "oncall" and route.group_wait == 1.0


def test_ground_truth_lines_events_up_in_wall_time(tmp_path: Path) -> None:
    from forewarn.testbed.run import Bed, RunOptions

    bed = Bed(RunOptions(Scenario.preset("ci"), tmp_path))
    bed.start = 1000.0
    truth = {r["kind"]: r for r in bed.ground_truth()}
    assert (
        truth["slow_dependency"]["page"] == "payments" and truth["slow_dependency"]["onset_epoch"] == 1078.0
    )
    assert truth["disk_fill"]["full_95_epoch"] == 1147.0 and truth["surge"]["page"] is None


def test_node_lockfile_pins_exact_versions_and_names_no_registry() -> None:
    pkg = json.loads((node.SOURCE / "package.json").read_text())
    assert all(v[0].isdigit() for v in pkg["dependencies"].values()), "exact versions only"
    text = (node.SOURCE / "package-lock.json").read_text()
    lock = json.loads(text)
    assert all("resolved" not in p for p in lock["packages"].values())
    assert "registry" not in text and "://" not in text


# -- real: services under opentelemetry-instrument into a real collector ----------------------------


def test_old_http_conventions_over_otlp_http(settings, store, tmp_path: Path) -> None:
    """Real users send the old conventions too: http.server.duration, over OTLP/HTTP protobuf."""
    control = Control(tmp_path / "control.json")
    control.write({})
    with RunningCollector(settings, ClickHouseExporter(settings)) as svc:
        otel = OtelOptions(f"http://127.0.0.1:{svc.http_port}", "http/protobuf", "old", 1000, 500)
        with Fleet(tmp_path / "services", otel, control.path) as fleet:
            assert set(shop(fleet, 5, "product")) == {200}
            h = "otel_metrics_histogram"
            wait_for(
                lambda: one(
                    store,
                    f"SELECT count() FROM {h} WHERE MetricName = 'http.server.duration' AND ServiceName = 'catalog'",
                ),
                "old histogram",
            )
    assert one(store, f"SELECT count() FROM {h} WHERE MetricName = 'http.server.request.duration'") == 0


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("FOREWARN_TESTBED_JS") != "1" or shutil.which("npm") is None,
    reason="Node.js services: set FOREWARN_TESTBED_JS=1 (installs the pinned npm packages on first use)",
)
def test_node_services_send_the_js_sdks_telemetry(settings, store, tmp_path: Path) -> None:
    control = Control(tmp_path / "control.json")
    control.write({})
    with RunningCollector(settings, ClickHouseExporter(settings)) as svc:
        otel = OtelOptions(f"http://127.0.0.1:{svc.grpc_port}", metric_interval_ms=2000, batch_delay_ms=500)
        with Fleet(tmp_path / "services", otel, control.path, lang="js") as fleet:
            assert mostly_ok(shop(fleet, 10))
            wait_for(
                lambda: one(
                    store,
                    "SELECT count() FROM otel_metrics_histogram WHERE MetricName = 'http.server.request.duration' AND Attributes['http.route'] = '/charge'",
                ),
                "JS http.server.request.duration",
            )
    assert one(store, "SELECT uniqExact(ServiceName) FROM otel_traces WHERE SpanKind = 'Server'") == 5
    assert one(store, "SELECT count() FROM otel_logs WHERE Body LIKE 'order % placed%'") > 0


@pytest.fixture(scope="module")
def bed(chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A collector on the session's store (own database) and the five Python services sending to it
    over OTLP/gRPC with the stable HTTP conventions and 1 s export intervals."""
    root = tmp_path_factory.mktemp("testbed")
    s = load_settings(
        overrides={
            "data_dir": str(root),
            "storage": {"dsn": chdb_dsn, "database": "tb_" + uuid.uuid4().hex[:10]},
        }
    )
    store = open_storage(s)
    control = Control(root / "control.json")
    control.write({})
    with RunningCollector(s, ClickHouseExporter(s)) as svc:
        otel = OtelOptions(
            endpoint=f"http://127.0.0.1:{svc.grpc_port}", metric_interval_ms=1000, batch_delay_ms=500
        )
        fleet = Fleet(root / "services", otel, control.path)
        try:
            fleet.start()
            yield {"store": store, "fleet": fleet, "control": control, "db": s.storage.database}
        finally:
            fleet.stop()
    store.command(f"DROP DATABASE IF EXISTS `{s.storage.database}`")
    store.close()


def wait_for(fn: Callable[[], Any], what: str, timeout_s: float = 120.0) -> Any:
    """Poll until ``fn()`` is truthy: telemetry lands after the SDKs' export intervals."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def one(store, sql: str, **params: Any) -> Any:
    return store.query(sql, parameters=params).result_rows[0][0]


def mostly_ok(codes: list[int]) -> bool:
    """Successes, declines (402) and at most the odd 5xx of the base error rate (0.3 % at payments)."""
    return set(codes) <= {200, 402, 502} and sum(c >= 500 for c in codes) <= 1


def shop(fleet: Fleet, n: int, route: str = "checkout") -> list[int]:
    """``n`` user requests through the frontend; the status codes."""
    codes = []
    with httpx.Client(base_url=fleet.url("frontend"), timeout=30.0) as c:
        for i in range(n):
            if route == "checkout":
                r = c.post("/checkout", json={"user": "t", "items": [{"id": 1 + i % 50, "qty": 1}]})
            else:
                r = c.get(f"/products/{1 + i % 50}")
            codes.append(r.status_code)
    return codes


def test_services_send_what_real_instrumentation_sends(bed: dict) -> None:
    store, fleet = bed["store"], bed["fleet"]
    assert mostly_ok(shop(fleet, 12))
    assert set(shop(fleet, 12, "product")) == {200}
    t = f"`{bed['db']}`.otel_traces"
    # one trace crosses all five services, each hop a server span with the route template
    wait_for(
        lambda: one(store, f"SELECT uniqExact(ServiceName) FROM {t} WHERE SpanKind = 'Server'") == 5,
        "5 services",
    )
    routes = {
        r[0]: r[1]
        for r in store.query(
            f"SELECT ServiceName, groupUniqArray(SpanAttributes['http.route']) FROM {t} WHERE SpanKind = 'Server' GROUP BY 1"
        ).result_rows
    }
    assert "/products/{product_id}" in routes["catalog"] and "/charge" in routes["payments"]
    assert (
        one(store, f"SELECT max(n) FROM (SELECT uniqExact(ServiceName) AS n FROM {t} GROUP BY TraceId)") == 5
    )
    assert (
        one(
            store,
            f"SELECT count() FROM {t} WHERE ServiceName = 'catalog' AND SpanAttributes['db.system'] = 'sqlite'",
        )
        > 0
    )
    assert one(store, f"SELECT count() FROM {t} WHERE SpanKind = 'Client' AND ServiceName = 'checkout'") > 0
    # the stable HTTP histogram with route, method and status code
    h = f"`{bed['db']}`.otel_metrics_histogram"
    attrs = wait_for(
        lambda: (
            store.query(
                f"SELECT Attributes FROM {h} WHERE MetricName = 'http.server.request.duration' AND ServiceName = 'payments' LIMIT 1"
            ).result_rows
        ),
        "http.server.request.duration",
    )[0][0]
    assert {"http.route", "http.request.method", "http.response.status_code"} <= set(attrs)
    assert one(store, f"SELECT count() FROM {h} WHERE MetricName = 'http.server.duration'") == 0
    # system and process metrics, the catalog's disk, and logs bridged from Python logging
    sums = f"`{bed['db']}`.otel_metrics_sum"
    wait_for(
        lambda: one(store, f"SELECT count() FROM {sums} WHERE MetricName = 'system.filesystem.usage'"),
        "disk usage",
    )
    names = {r[0] for r in store.query(f"SELECT DISTINCT MetricName FROM {sums}").result_rows}
    assert {"process.memory.usage", "system.cpu.time", "system.filesystem.usage"} <= names
    logs = f"`{bed['db']}`.otel_logs"
    body = wait_for(
        lambda: one(
            store,
            f"SELECT any(Body) FROM {logs} WHERE ServiceName = 'checkout' AND Body LIKE 'order % placed%'",
        ),
        "order log",
    )
    assert body.startswith("order o-")
    assert one(store, f"SELECT count() FROM {logs} WHERE TraceId != '' AND ServiceName = 'checkout'") > 0


def test_fault_switches_change_what_they_should(bed: dict) -> None:
    store, fleet, control = bed["store"], bed["fleet"], bed["control"]
    db = f"`{bed['db']}`"
    now = time.time()
    control.write(
        {
            "services": {
                "checkout": {"error_ratio": 0.5},
                "payments": {"latency": {"POST /charge": 5.0}},
                "inventory": {"log_burst_per_s": 20},
                "catalog": {
                    "disk": {"start": now, "duration_s": 4, "from": 0.6, "to": 1.0},
                    "db_delay_ms": 40,
                },
                "frontend": {"leak_mb_per_s": 40},
            }
        }
    )
    # the services re-read the control file every 0.2 s (later on a loaded machine): half of the
    # orders then fail at checkout (about 20 of 40)
    wait_for(lambda: sum(c >= 500 for c in shop(fleet, 40)) >= 5, "failing orders")
    # errors are the checkout's own server spans with status Error; the log says why
    wait_for(
        lambda: (
            one(
                store,
                f"SELECT count() FROM {db}.otel_traces WHERE ServiceName = 'checkout' AND SpanKind = 'Server' AND StatusCode = 'Error'",
            )
            >= 5
        ),
        "checkout errors",
    )
    assert (
        one(
            store,
            f"SELECT count() FROM {db}.otel_logs WHERE Body LIKE 'order % failed: order store unavailable%'",
        )
        > 0
    )
    # payments: the charge takes about five times as long (compare medians before and after)
    ms = lambda since, until: one(  # noqa: E731
        store,
        f"SELECT quantileExact(0.5)(Duration) / 1e6 FROM {db}.otel_traces WHERE ServiceName = 'payments' AND SpanKind = 'Server' "
        "AND Timestamp >= fromUnixTimestamp64Milli({a:Int64}) AND Timestamp < fromUnixTimestamp64Milli({b:Int64})",
        a=int(since * 1000), b=int(until * 1000),
    )  # fmt: skip
    wait_for(lambda: ms(now + 1, now + 3600) > 0, "slow charges")
    assert ms(now + 1, now + 3600) > 2.5 * ms(0, now)
    # catalog: every statement waits (the cascade), and the disk fills to 100 %
    db_ms = f"SELECT quantileExact(0.5)(Duration) / 1e6 FROM {db}.otel_traces WHERE ServiceName = 'catalog' AND SpanKind = 'Client' AND Timestamp >= fromUnixTimestamp64Milli({{a:Int64}}) AND SpanName LIKE 'SELECT%'"
    wait_for(lambda: one(store, db_ms, a=int((now + 1) * 1000)) > 20, "slow statements")
    used = lambda: one(  # noqa: E731
        store,
        f"SELECT argMax(Value, TimeUnix) FROM {db}.otel_metrics_sum WHERE MetricName = 'system.filesystem.usage' "
        "AND Attributes['system.filesystem.state'] = 'free'",
    )
    wait_for(lambda: used() == 0, "a full disk")
    # inventory: a never-seen error template at a high rate
    wait_for(
        lambda: (
            one(
                store,
                f"SELECT count() FROM {db}.otel_logs WHERE ServiceName = 'inventory' AND SeverityText = 'ERROR' AND Body LIKE 'warehouse sync aborted%'",
            )
            >= 20
        ),
        "log burst",
    )

    # frontend: resident memory grows
    def rss():
        return one(
            store,
            f"SELECT max(Value) - min(Value) FROM {db}.otel_metrics_sum WHERE ServiceName = 'frontend' AND MetricName = 'process.memory.usage'",
        )

    wait_for(lambda: rss() > 40 * 2**20, "memory growth")
    control.write({})
    wait_for(lambda: mostly_ok(shop(fleet, 10)), "the faults to end")


def test_a_rolling_deploy_changes_the_version_without_dropping_requests(bed: dict) -> None:
    store, fleet = bed["store"], bed["fleet"]
    fleet.deploy("payments", "1.1.0", "POST /charge=1.1")
    assert fleet.versions["payments"] == "1.1.0"
    codes = shop(fleet, 8)
    assert mostly_ok(codes)
    wait_for(
        lambda: one(
            store,
            f"SELECT count() FROM `{bed['db']}`.otel_traces WHERE ServiceName = 'payments' AND ResourceAttributes['service.version'] = '1.1.0'",
        ),
        "spans of version 1.1.0",
    )


def test_users_follow_the_control_file(bed: dict, tmp_path: Path) -> None:
    """The traffic generator as a process: new routes only once launched, rate from the control file."""
    import subprocess
    import sys

    control = Control(tmp_path / "users.json")
    control.write({"traffic": {"multiplier": 2.0, "routes": ["GET /search"]}})
    out = subprocess.run(
        [sys.executable, "-m", "forewarn.testbed.traffic", "--target", bed["fleet"].url("frontend"), "--control",
         str(control.path), "--rate", "5", "--duration", "4", "--stats-s", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    final = json.loads(out.stdout.strip().splitlines()[-1])
    assert final["final"] and final.get("200", 0) > 5, out.stdout + out.stderr
    store = bed["store"]
    wait_for(
        lambda: one(store, f"SELECT count() FROM `{bed['db']}`.otel_traces WHERE SpanName = 'GET /search'"),
        "GET /search",
    )
    assert (
        one(store, f"SELECT count() FROM `{bed['db']}`.otel_traces WHERE SpanName = 'GET /recommendations'")
        == 0
    )


# -- end to end: the judge on today's flows ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="the ci scenario (scale 0.2) pages 59-82 virtual s after onset, over the 60 s allowed; the full one (scale 1) passes (docs/testbed.md, issue 11)",
)
@pytest.mark.skipif(
    os.environ.get("FOREWARN_TESTBED_E2E") != "1",
    reason="about 5 minutes, and its scale-0.2 run does not pass yet: FOREWARN_TESTBED_E2E=1 runs it (remove this skip once it passes)",
)
def test_each_fault_is_paged_once_for_the_right_service(tmp_path: Path) -> None:
    from forewarn.testbed.run import RunOptions, run_scenario

    v = run_scenario(RunOptions(Scenario.preset("ci"), tmp_path / "run", out=lambda _line: None))
    assert v.passed, v.table()


def test_scenario_events_are_known_kinds() -> None:
    from forewarn.testbed.timeline import KINDS

    for name in ("full", "ci", "quiet", "extended", "moved"):
        s = Scenario.preset(name)
        assert all(e.kind in KINDS for e in s.events)
        assert all(isinstance(e, Event) and e.end_s <= s.duration_s for e in s.events)
    assert not Scenario.preset("quiet").faults
