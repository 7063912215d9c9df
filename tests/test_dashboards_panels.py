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


def test_report_incidents_show_their_real_state_not_all_firing(sample, tmp_path):
    """`report` listed every incident as "firing": an incident quiet for longer than the
    correlation window dropped out of the score flow's view before resolve_after_s, so it was never
    resolved. Incidents quiet for resolve_after_s are resolved, and the report says so."""
    from forewarn.dashboards.report import render_report

    client, info = sample
    # the last micro-batch ends up to a bucket plus the lateness before the sample's end
    quiet_since = info.end_ms - 300_000 - 60_000
    resolved, stuck = client.query(
        "SELECT countIf(resolved), groupArrayIf(toString(updated_at), NOT resolved AND "
        f"toUnixTimestamp64Milli(updated_at) < {quiet_since}) FROM incidents FINAL WHERE run = 'live'"
    ).result_rows[0]
    assert resolved > 0 and stuck == [], (stuck, info.end_ms)
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000 + 60, interval_s=60)
    page = render_report(client, [DASHBOARDS["forewarn-alerts"]], r, tmp_path / "r").read_text()
    assert "<td>resolved</td>" in page


def test_report_tables_keep_their_text_html_from_markdown_and_progress(sample, tmp_path):
    """`report` tables cut their text off, its HTML showed raw markdown and a 30-second run
    printed nothing."""
    import io

    from forewarn.dashboards.report import render_report
    from rich.console import Console
    from rich.progress import Progress

    client, info = sample
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000 + 60, interval_s=60)
    dashboards = [DASHBOARDS["forewarn-alerts"], DASHBOARDS["forewarn-anomalies"]]
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True, width=80))
    with progress:
        page = render_report(client, dashboards, r, tmp_path / "r", progress=progress).read_text()
    overall = progress.tasks[0]
    assert overall.total == 2 and overall.completed == 2
    assert "<strong>silences</strong>" in page and "**silences**" not in page  # markdown rendered
    longest = client.query(
        "SELECT toString(alert_labels) FROM incidents FINAL WHERE run = 'live' ORDER BY length(toString(alert_labels)) DESC LIMIT 1"
    ).result_rows[0][0]
    assert len(longest) > 40
    import html as html_mod

    assert f"<td>{html_mod.escape(longest)}</td>" in page  # the whole cell, not cut at 28 characters


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


@pytest.fixture(scope="module")
def via_http(sample):
    """The sample store behind the ClickHouse HTTP interface, read by clickhouse-connect over HTTP
    as the dashboard user (``default``, read-only): the route Grafana takes to ``forewarn up``."""
    import clickhouse_connect

    from forewarn.clickhouse_http import ClickHouseHTTPServer

    client, _ = sample
    srv = ClickHouseHTTPServer(load_settings().clickhouse_http, SAMPLE_DSN[0], client.database, port=0)
    srv.start()
    yield clickhouse_connect.get_client(host="127.0.0.1", port=srv.port, database=client.database)
    srv.stop()


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_panel_query_runs_through_the_clickhouse_http_interface(sample, via_http, uid):
    client, info = sample
    r = TimeRange(info.start_ms / 1000, info.end_ms / 1000 + 60, interval_s=60)
    direct = run_dashboard(client, DASHBOARDS[uid], r)
    over_http = run_dashboard(via_http, DASHBOARDS[uid], r)
    errors = {t.key: f"{t.error}\n{t.sql}" for t in [*over_http.targets, *over_http.annotations] if t.error}
    assert not errors, errors
    assert over_http.options == direct.options
    for a, b in zip(
        [*direct.targets, *direct.annotations], [*over_http.targets, *over_http.annotations], strict=True
    ):
        assert a.key == b.key and a.sql == b.sql
        assert list(a.frame.columns) == list(b.frame.columns), a.key
        assert len(a.frame) == len(b.frame), a.key
        assert [str(t) for t in a.frame.dtypes] == [str(t) for t in b.frame.dtypes], a.key


def _grafana_otel_queries(db: str, start_s: int, end_s: int, trace_id: str) -> dict[str, str]:
    """The SQL the Grafana ClickHouse plugin (v4, OTel mode, version latest) sends for its trace
    search, trace view, log view, log volume and trace-to-logs link, macros already expanded."""
    tf = f"toDateTime({start_s})", f"toDateTime({end_s})"
    return {
        "trace search": f"""SELECT "TraceId" as traceID, "ServiceName" as serviceName, "SpanName" as traceName,
            "Timestamp" as startTime, multiply("Duration", 0.000001) as duration FROM "{db}"."otel_traces"
            WHERE ( Timestamp >= {tf[0]} AND Timestamp <= {tf[1]} ) AND ( ParentSpanId = '' ) AND ( Duration > 0 )
            ORDER BY Timestamp DESC, Duration DESC LIMIT 1000""",
        "trace view": f"""WITH '{trace_id}' as trace_id,
            (SELECT min(Start) FROM "{db}"."otel_traces_trace_id_ts" WHERE TraceId = trace_id) as trace_start,
            (SELECT max(End) + 1 FROM "{db}"."otel_traces_trace_id_ts" WHERE TraceId = trace_id) as trace_end
            SELECT "TraceId" as traceID, "SpanId" as spanID, "ParentSpanId" as parentSpanID,
              "ServiceName" as serviceName, "SpanName" as operationName,
              multiply(toUnixTimestamp64Nano("Timestamp"), 0.000001) as startTime,
              multiply("Duration", 0.000001) as duration,
              arrayMap(key -> map('key', key, 'value',"SpanAttributes"[key]), mapKeys("SpanAttributes")) as tags,
              arrayMap(key -> map('key', key, 'value',"ResourceAttributes"[key]), mapKeys("ResourceAttributes")) as serviceTags,
              arrayMap((name, timestamp, attributes) -> tuple(name, toString(toUnixTimestamp64Milli(timestamp)),
                arrayMap( key -> map('key', key, 'value', attributes[key]), mapKeys(attributes)))::Tuple(name String,
                timestamp String, fields Array(Map(String, String))), "Events.Name", "Events.Timestamp", "Events.Attributes") AS logs,
              arrayMap((traceID, spanID, attributes) -> tuple(traceID, spanID, arrayMap(key -> map('key', key, 'value',
                attributes[key]), mapKeys(attributes)))::Tuple(traceID String, spanID String, tags Array(Map(String, String))),
                "Links.TraceId", "Links.SpanId", "Links.Attributes") AS references,
              "StatusCode" as statusCode, "StatusMessage" as statusMessage, "SpanKind" as kind, "TraceState" as traceState
            FROM "{db}"."otel_traces" WHERE traceID = trace_id AND "Timestamp" >= trace_start AND "Timestamp" <= trace_end
              AND ( Duration > 0 ) LIMIT 1000""",
        "log view": f"""SELECT Timestamp as "timestamp", Body as "body", SeverityText as "level",
            LogAttributes as "labels", TraceId as "traceID", SpanId as "spanID" FROM "{db}"."otel_logs"
            WHERE ( timestamp >= {tf[0]} AND timestamp <= {tf[1]} ) ORDER BY timestamp DESC LIMIT 1000""",
        "log volume": f"""SELECT toStartOfInterval("Timestamp", INTERVAL 60 second) as "time",
            sum(multiSearchAny(toString("SeverityText"), ['critical','fatal','crit','alert','emerg','CRITICAL','FATAL','CRIT','ALERT','EMERG'])) as critical,
            sum(multiSearchAny(toString("SeverityText"), ['error','err','eror','ERROR','ERR','EROR'])) as error,
            sum(multiSearchAny(toString("SeverityText"), ['warn','warning','WARN','WARNING'])) as warn,
            sum(multiSearchAny(toString("SeverityText"), ['info','information','informational','INFO','INFORMATION','INFORMATIONAL'])) as info,
            sum(multiSearchAny(toString("SeverityText"), ['debug','DEBUG'])) as debug,
            sum(multiSearchAny(toString("SeverityText"), ['trace','TRACE'])) as trace,
            sum(multiSearchAny(toString("SeverityText"), ['unknown','UNKNOWN'])) as unknown
            FROM "{db}"."otel_logs" WHERE ( Timestamp >= {tf[0]} AND Timestamp <= {tf[1]} )
            GROUP BY time ORDER BY time ASC""",
        "logs of a trace": f"""SELECT Timestamp as "timestamp", Body as "body", SeverityText as "level",
            TraceId as "traceID" FROM "{db}"."otel_logs" WHERE ( traceID = '{trace_id}' )
            AND ( Timestamp >= {tf[0]} AND Timestamp <= {tf[1]} ) ORDER BY timestamp DESC LIMIT 1000""",
        "columns": f'DESC TABLE "{db}"."otel_traces"',
        "tables": f'SHOW TABLES FROM "{db}"',
        "databases": "SHOW DATABASES",
        "version": "SELECT version()",
    }


def test_grafana_plugin_otel_queries_through_the_clickhouse_http_interface(sample, via_http):
    client, info = sample
    trace_id = client.command(
        "SELECT TraceId FROM otel_traces WHERE ParentSpanId = '' AND Duration > 0 LIMIT 1"
    )
    queries = _grafana_otel_queries(
        client.database, info.start_ms // 1000, info.end_ms // 1000 + 60, trace_id
    )
    for name, sql in queries.items():
        got = via_http.query(sql)
        want = client.query(sql)
        assert got.column_names == want.column_names, name
        assert got.row_count == want.row_count and got.row_count > 0, name
    spans = via_http.query(queries["trace view"]).named_results()
    assert {s["traceID"] for s in spans} == {trace_id}


def test_the_dashboard_user_cannot_write_over_http(sample, via_http):
    from clickhouse_connect.driver.exceptions import DatabaseError

    client, _ = sample
    before = client.command("SELECT count() FROM otel_traces")
    for sql in (
        "TRUNCATE TABLE otel_traces",
        "INSERT INTO otel_logs (Body) VALUES ('x')",
        "DROP TABLE otel_logs",
    ):
        with pytest.raises(DatabaseError, match="READONLY"):
            via_http.command(sql)
    assert client.command("SELECT count() FROM otel_traces") == before
