"""The flows as real Prefect flow runs (Prefect's temporary local server): score, train (picked up
by the next score run), backtest, and the embedded FlowsService scoring through Prefect."""

from __future__ import annotations

import time

import pytest
from flows_data import T0_MS, scenario

STEP, BUCKETS, INCIDENT = 10_000, 60, 40


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_score_train_backtest_as_prefect_flow_runs(prefect_server, store, settings):
    from forewarn.flows import prefect_flows

    scenario(store, settings.storage.database, T0_MS, BUCKETS, INCIDENT)
    rt = prefect_flows.configure(settings, settings.storage_dsn)
    eng = rt.engine("live", 0, 1)
    eng.clock = lambda: (T0_MS + BUCKETS * STEP) / 1000.0 + 10
    eng.start_at(T0_MS)

    state = prefect_flows.score_flow(until_ms=T0_MS + INCIDENT * STEP, max_batches=5, return_state=True)
    assert state.is_completed()
    reports = state.result()
    assert reports and reports[-1]["end_ms"] == T0_MS + INCIDENT * STEP
    assert sum(r["anomalies"] for r in reports) == 0  # steady traffic: nothing to report

    # history must be in the past of the wall clock for train's window; fit on the steady part
    from forewarn.flows.models import train
    from forewarn.flows.store import FlowStore

    versions = train(
        FlowStore(store, settings.storage.database), 1, T0_MS, T0_MS + INCIDENT * STEP, time.time() * 1000
    )
    assert versions
    via_flow = prefect_flows.train_flow(history_s=time.time() - T0_MS / 1000 + 60, return_state=True)
    assert via_flow.is_completed() and all(v == 2 for v in via_flow.result().values())

    reports = prefect_flows.score_flow(until_ms=T0_MS + BUCKETS * STEP, max_batches=10)
    assert (
        sum(r["anomalies"] for r in reports) > 0 and len({i for r in reports for i in r["incidents"]}) == 1
    ), reports
    assert eng.models.versions == {k: 2 for k in versions}  # the running engine took the new version

    report = prefect_flows.backtest_flow(start_ms=T0_MS, end_ms=T0_MS + BUCKETS * STEP, run="bt-prefect")
    assert report["incidents"] == 1 and report["anomalies"] > 0


def test_flows_service_scores_through_prefect(prefect_server, store, settings):
    from forewarn.flows.service import FlowsService

    s = settings.model_copy(deep=True)
    s.flows.step_s, s.flows.lateness_s, s.flows.interval_s, s.flows.start_lookback_s = 1.0, 0.0, 0.5, 5.0
    svc = FlowsService(s, s.storage_dsn, None)
    svc.start_thread()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and svc.prefect_ticks < 2:
            time.sleep(0.5)
    finally:
        svc.stop_thread()
    assert svc.orchestrator == "prefect" and svc.prefect_ticks >= 2 and svc.errors == 0, svc.last_error


def test_slo_flow_as_a_prefect_flow_run(prefect_server, store, settings, tmp_path):
    """``forewarn-slo``: the SLO files of ``slo.dir`` counted, evaluated (a page) as a flow run."""
    from forewarn.flows import prefect_flows
    from test_slo_alerts import stream
    from test_slo_cli import SLO_FILE

    d = tmp_path / "slos"
    d.mkdir()
    (d / "api.yaml").write_text(SLO_FILE.replace("service: api\n", "service: api\nslo_period: 7d\n"))
    s = settings.model_copy(deep=True)
    s.slo.dir = d
    now = int(time.time()) // 60 * 60_000
    stream(store, s.storage.database, now - 70 * 60_000, 68, lambda i: 40)
    prefect_flows.configure(s, s.storage_dsn)
    state = prefect_flows.slo_flow(return_state=True)
    assert state.is_completed()
    out = state.result()
    assert out["slos"] == 1 and out["runs"] >= 1 and out["firing"] == {"api-availability": ["page", "ticket"]}
