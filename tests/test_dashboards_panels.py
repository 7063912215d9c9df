"""Every dashboard panel's SQL runs on chDB, on real OTLP telemetry scored by the real flows, with the
ClickHouse plugin's macros and Grafana's variable interpolation applied as they apply them, and
returns rows shaped for its visualization. Grafana itself cannot be installed here."""

from __future__ import annotations

import uuid

import pytest
from forewarn.dashboards.build import load_dashboards
from forewarn.dashboards.macros import ALL, TimeRange
from forewarn.dashboards.runner import run_dashboard, shape_error
from forewarn.dashboards.sample import populate

from forewarn.config import load_settings
from forewarn.storage import open_storage

DASHBOARDS = {d["uid"]: d for d in load_dashboards()}
SAMPLE_DSN: list[str] = []  # the session store's DSN, for the commands run in this process


@pytest.fixture(scope="module")
def sample(chdb_dsn, tmp_path_factory):
    """80 minutes of the synthetic shop, scored by the flows (once for the module: it takes a while)."""
    db = "t_dash_" + uuid.uuid4().hex[:8]
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path_factory.mktemp("dash")),
            "storage": {"dsn": chdb_dsn, "database": db},
            "flows": {"orchestrator": "inline", "warmup_points": 60},
        }
    )
    client = open_storage(settings)
    SAMPLE_DSN[:] = [chdb_dsn]
    info = populate(client, settings, minutes=80)
    yield client, info
    client.command(f"DROP DATABASE IF EXISTS `{db}`")
    client.close()


def test_sample_went_through_the_product(sample):
    client, info = sample
    assert info.rows["otel_traces"] > 10_000 and info.rows["otel_logs"] > 10_000
    assert info.rows["otel_metrics_gauge"] > 0 and info.rows["otel_metrics_sum"] > 0
    assert info.anomalies > 0
    assert client.query("SELECT count() FROM incidents").result_rows[0][0] > 0


SELECTIONS = {
    "all": {},
    "one-service": {"service": ["payments"], "environment": ["demo"]},
    "two-services-one-op": {"service": ["checkout", "payments"], "operation": ["POST /charge"]},
}


@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_panel_query_runs_and_has_the_right_shape(sample, uid, selection):
    client, info = sample
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000 + 60, interval_s=60)
    run = run_dashboard(client, DASHBOARDS[uid], r, SELECTIONS[selection])
    assert run.options["service"] == ["checkout", "db", "frontend", "payments"]
    assert run.options["environment"] == ["demo"]
    errors = {t.key: f"{t.error}\n{t.sql}" for t in [*run.targets, *run.annotations] if t.error}
    assert not errors, errors
    shapes = {}
    for t in [*run.targets, *run.annotations]:
        if len(t.frame) and (err := shape_error(t.panel_type, t.fmt, t.frame)):
            shapes[t.key] = f"{err}: {list(t.frame.dtypes.items())}"
    assert not shapes, shapes
    # Every panel instance draws something on this data: at least one target returned rows.
    by_panel: dict[str, int] = {}
    for t in run.targets:
        k = t.key.rsplit("/", 1)[0]
        by_panel[k] = by_panel.get(k, 0) + len(t.frame)
    empty = sorted(k for k, n in by_panel.items() if n == 0)
    if selection == "all":
        assert not empty, empty
        assert all(len(a.frame) for a in run.annotations), [
            a.title for a in run.annotations if not len(a.frame)
        ]
    assert by_panel, "no SQL panel ran"


def test_repeated_panels_follow_the_selection(sample):
    client, info = sample
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000, interval_s=60)
    dash = DASHBOARDS["forewarn-service-overview"]
    every = run_dashboard(client, dash, r, {"service": ALL})
    band = [t for t in every.targets if t.title.startswith("$service") and t.ref_id == "A"]
    assert sorted(t.repeat_value for t in band) == ["checkout", "db", "frontend", "payments"]
    assert all({"time", "value", "expected", "lower", "upper"} <= set(t.frame.columns) for t in band)
    b = band[0].frame.dropna()
    assert len(b) and (b["lower"] <= b["expected"]).all() and (b["expected"] <= b["upper"]).all()
    one = run_dashboard(client, dash, r, {"service": ["db"]})
    assert [t.repeat_value for t in one.targets if t.title.startswith("$service") and t.ref_id == "A"] == [
        "db"
    ]


def test_filters_narrow_the_result(sample):
    client, info = sample
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000, interval_s=300)
    dash = DASHBOARDS["forewarn-service-overview"]
    rate = next(p for p in dash["panels"] if p["title"] == "Request rate")
    run = run_dashboard(client, {**dash, "panels": [rate]}, r, {"service": ["db"]})
    assert set(run.targets[0].frame["service"]) == {"db"}
    run = run_dashboard(client, {**dash, "panels": [rate]}, r, {"environment": ["production"]})
    assert run.targets[0].frame.empty


def test_report_renders_every_panel_instance(sample, tmp_path):
    import matplotlib.image as mpimg
    from forewarn.dashboards.report import render_report

    client, info = sample
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000 + 60, interval_s=60)
    index = render_report(client, list(DASHBOARDS.values()), r, tmp_path / "report")
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    instances = set()
    for d in DASHBOARDS.values():
        run = run_dashboard(client, d, r)
        instances |= {(d["uid"], t.panel_id, t.repeat_value) for t in run.targets}
    assert len(pngs) == len(instances)
    assert "forewarn-logs-traces-05-payments.png" in pngs  # the heatmap, repeated per service
    page = index.read_text()
    assert all(f"src='{p}'" in page for p in pngs) and "What this dashboard can see" in page
    img = mpimg.imread(tmp_path / "report" / "forewarn-service-overview-04-payments.png")
    assert img.shape[0] > 200 and img.shape[1] > 600 and img[..., :3].std() > 0.05  # not a blank canvas


def test_check_and_report_commands(sample, tmp_path):
    from typer.testing import CliRunner

    from forewarn.cli import app

    client, _ = sample
    env = {"FOREWARN_STORAGE__DATABASE": client.database, "FOREWARN_CONFIG": ""}
    runner = CliRunner()
    res = runner.invoke(app, ["grafana", "check", "--storage", SAMPLE_DSN[0], "--since", "2h"], env=env)
    assert res.exit_code == 0, res.output
    assert "FAIL" not in res.output and "forewarn · Service overview" in res.output
    res = runner.invoke(
        app, ["report", "--storage", SAMPLE_DSN[0], "--since", "2h", "--out", str(tmp_path / "r")], env=env
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "index.html").exists() and len(list((tmp_path / "r").glob("*.png"))) > 30
