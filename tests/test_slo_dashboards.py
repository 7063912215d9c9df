"""The per-SLO Grafana dashboard: every panel's SQL runs on the real store after the SLO flow
has counted a stream, draws something, and has the shape its panel needs; the dashboards are
written for file provisioning by ``forewarn slo dashboards``."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from forewarn.dashboards.macros import TimeRange
from forewarn.dashboards.runner import run_dashboard, shape_error
from forewarn.dashboards.slo import slo_dashboard, uid_of
from forewarn.flows.slo import SLOEngine
from forewarn.flows.slo_spec import TimeWindow
from test_slo_alerts import SLO_999, stream

MIN = 60_000


def test_every_panel_runs_and_draws(settings, store):
    t0 = int(time.time() - 10 * 3600) // 60 * MIN
    # rising errors (a page near the end) so every panel, the forecast included, has data
    stream(store, settings.storage.database, t0, 540, lambda i: int(i / 160) if i < 470 else 40)
    slo = replace(SLO_999, window=TimeWindow(7))
    eng = SLOEngine(store, settings, [slo], clock=lambda: 0.0)
    eng.start_at(t0)
    for m in range(60, 541, 60):
        eng.run_once(t0 + m * MIN, send_alerts=False)
    dash = slo_dashboard(slo)
    r = TimeRange(t0 / 1000, (t0 + 541 * MIN) / 1000, interval_s=300)
    run = run_dashboard(store, dash, r, {})
    errors = {t.key: f"{t.error}\n{t.sql}" for t in run.targets if t.error}
    assert not errors, errors
    shapes = {
        t.key: err for t in run.targets if len(t.frame) and (err := shape_error(t.panel_type, t.fmt, t.frame))
    }
    assert not shapes, shapes
    empty = [t.key for t in run.targets if not len(t.frame)]
    assert not empty, empty
    by_id = {t.panel_id: t.frame for t in run.targets}
    assert len(by_id) == len(dash["panels"])
    (firing,) = [by_id[p["id"]] for p in dash["panels"] if p["title"] == "Alerts firing"]
    assert firing.iloc[0, 0] == "page, ticket"


def test_uids_fit_grafana_and_command_writes_files(tmp_path, settings):
    long = replace(SLO_999, name="a-very-long-slo-name-for-the-checkout-path")
    assert len(uid_of(long)) <= 40 and uid_of(long) != uid_of(SLO_999)
    from typer.testing import CliRunner

    from forewarn.cli import app

    d = tmp_path / "slos"
    d.mkdir()
    (d / "api.yaml").write_text(
        'version: "prometheus/v1"\nservice: api\nslos:\n  - name: availability\n    objective: 99.9\n'
        '    sli:\n      events:\n        error_query: spans{service="api", status="error"}\n'
        '        total_query: spans{service="api"}\n'
    )
    res = CliRunner().invoke(app, ["slo", "dashboards", "--dir", str(d), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    (f,) = list((tmp_path / "out").glob("*.json"))
    assert json.loads(f.read_text())["uid"] == "forewarn-slo-api-availability"
