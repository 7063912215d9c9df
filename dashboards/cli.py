"""Commands of the dashboards component: ``forewarn grafana push|check`` and ``forewarn report``.

Heavy imports (grafana-client, matplotlib, clickhouse-connect) stay inside the command bodies so
``forewarn --help`` stays fast.

>>> parse_duration("90m"), parse_duration("6h"), parse_duration("2d"), parse_duration("45")
(5400.0, 21600.0, 172800.0, 45.0)
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit

import typer

from forewarn import cliutil

if TYPE_CHECKING:
    from forewarn.config import ClickHouseHTTPSettings

StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123."),
]
SinceOpt = Annotated[str, typer.Option("--since", help="Time range ending now: 90m, 6h, 2d.")]

REPORT_POINTS = 120  # a PNG is ~900 px wide: fewer, steadier buckets than a wide Grafana panel
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90m, 6h, 2d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _since(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        cliutil.fail(str(e))


def register(app: typer.Typer) -> None:
    grafana = typer.Typer(
        help="Grafana: push dashboards and annotations, check every panel's SQL.", no_args_is_help=True
    )
    grafana.command("push")(push_cmd)
    grafana.command("check")(check_cmd)
    app.add_typer(grafana, name="grafana")
    app.command("report")(report_cmd)
    # `forewarn slo dashboards`: the SLO group is the flows' (registered before this module)
    (slo,) = [g.typer_instance for g in app.registered_groups if g.name == "slo"]
    slo.command("dashboards")(slo_dashboards_cmd)
    app.command("demo")(demo_cmd)


def slo_dashboards_of(s) -> list[dict[str, Any]]:
    """One dashboard per SLO of ``slo.dir`` (none when unset; a wrong SLO file stops the command)."""
    if s.slo.dir is None:
        return []
    from forewarn.dashboards.slo import slo_dashboards
    from forewarn.flows.slo_spec import SLOFileError, load_dir

    try:
        return slo_dashboards(load_dir(s.slo.dir))
    except SLOFileError as e:
        cliutil.fail(str(e))


def slo_dashboards_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory to write one dashboard JSON per SLO into.")],
    slo_dir: Annotated[
        Path | None, typer.Option("--dir", help="Directory of OpenSLO / Sloth YAML files (default slo.dir).")
    ] = None,
) -> None:
    """Write a Grafana dashboard per SLO (objective, SLI, budget, burn rates, forecast band) for
    Grafana's file provisioning; `forewarn grafana push` pushes them itself when slo.dir is set."""
    s = cliutil.settings(ctx, slo={"dir": str(slo_dir) if slo_dir else None})
    if s.slo.dir is None:
        cliutil.fail("no SLO directory: set slo.dir in the config (or FOREWARN_SLO__DIR), or pass --dir")
    out.mkdir(parents=True, exist_ok=True)
    for d in slo_dashboards_of(s):
        (out / f"{d['uid']}.json").write_text(json.dumps(d, indent=2) + "\n")
        typer.echo(f"{out / (d['uid'] + '.json')}")


def clickhouse_for_grafana(
    storage_dsn: str,
    url: str | None,
    user: str | None,
    password: str | None,
    database: str,
    interface: ClickHouseHTTPSettings | None = None,
) -> dict[str, Any]:
    """The ClickHouse data source Grafana should use: ``--clickhouse-url``, else the store's own
    DSN when it is a server, else the ClickHouse HTTP interface that ``forewarn up`` and
    ``forewarn collector`` serve for an embedded store (its read-only ``default`` user)."""
    from forewarn.dashboards.build import clickhouse_datasource

    from forewarn.config import mask_dsn

    target = url or (storage_dsn if urlsplit(storage_dsn).scheme in ("http", "https") else None)
    if target is None:
        if interface is None or interface.port == 0:
            raise ValueError(
                "the store is embedded (chDB) and its ClickHouse HTTP interface is off "
                "(clickhouse_http.port: 0): turn it on, or pass --clickhouse-url http(s)://host:8123"
            )
        host = interface.host if interface.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        secure = interface.tls.enabled
        return clickhouse_datasource(
            host=host,
            port=interface.port,
            protocol="http",
            secure=secure,
            database=database,
            username=user or "default",
            password=password,
        )
    u = urlsplit(target)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"--clickhouse-url must be http(s)://host:port, got {mask_dsn(target)!r}")
    secure = u.scheme == "https"
    return clickhouse_datasource(
        host=u.hostname,
        port=u.port or (8443 if secure else 8123),
        protocol="http",
        secure=secure,
        database=database,
        username=user or (unquote(u.username) if u.username else "default"),
        password=password if password is not None else (unquote(u.password) if u.password else None),
    )


def push_cmd(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="FOREWARN_GRAFANA_URL", help="Grafana base URL.")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="FOREWARN_GRAFANA_TOKEN", help="Service-account token (or basic auth in --url)."
        ),
    ] = None,
    clickhouse_url: Annotated[
        str | None,
        typer.Option(
            "--clickhouse-url",
            help="ClickHouse HTTP URL as Grafana must reach it (default: the store's, or forewarn's "
            "ClickHouse HTTP interface on the embedded store).",
        ),
    ] = None,
    clickhouse_user: Annotated[
        str | None, typer.Option("--clickhouse-user", help="Read-only query user.")
    ] = None,
    clickhouse_password: Annotated[
        str | None,
        typer.Option(
            "--clickhouse-password", envvar="FOREWARN_GRAFANA_CLICKHOUSE_PASSWORD", help="Its password."
        ),
    ] = None,
    router_url: Annotated[
        str | None,
        typer.Option("--router-url", help="forewarn router (Alertmanager API) for alerts and silences."),
    ] = None,
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
    since: SinceOpt = "6h",
    no_annotations: Annotated[
        bool, typer.Option("--no-annotations", help="Only data sources and dashboards.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep writing new annotations as they happen.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=1.0, help="Seconds between --follow rounds.")
    ] = 30.0,
) -> None:
    """Upsert forewarn's data sources, folder and dashboards into Grafana, then write anomaly,
    incident and remediation annotations (once, or continuously with --follow)."""
    from forewarn.dashboards.build import load_dashboards, router_datasource
    from forewarn.dashboards.push import GrafanaPush, PushError, PushReport

    s = cliutil.settings(ctx, storage={"dsn": storage}, data_dir=data_dir)
    window_s = _since(since)
    try:
        ch = clickhouse_for_grafana(
            s.storage_dsn,
            clickhouse_url,
            clickhouse_user,
            clickhouse_password,
            s.storage.database,
            s.clickhouse_http,
        )
    except ValueError as e:
        cliutil.fail(str(e))
    datasources = [ch]
    router, _ = cliutil.router(s, router_url)
    datasources.append(router_datasource(router))
    client = None
    if not no_annotations:
        client = cliutil.reader(s)  # the route of `forewarn query`: through a running forewarn
    pusher = GrafanaPush(url, token)
    now_ms = int(time.time() * 1000)
    try:
        rep = pusher.push(
            load_dashboards() + slo_dashboards_of(s),
            datasources,
            client,
            now_ms - int(window_s * 1000),
            now_ms,
        )
    except PushError as e:
        cliutil.fail(str(e), 1)
    typer.echo(f"Grafana {rep.grafana_version or '?'} at {pusher.url}")
    for uid, what in rep.datasources.items():
        typer.echo(f"  data source {uid}: {what}")
    for uid, link in rep.dashboards.items():
        typer.echo(f"  dashboard {uid}: {pusher.url}{link}")
    if client is not None:
        typer.echo(f"  annotations written: {_counts(rep.annotations)} (already there: {rep.skipped})")
    if not follow or client is None:
        return
    stop = cliutil.wait_for_shutdown()

    def written(r: PushReport) -> None:
        typer.echo(f"{time.strftime('%H:%M:%S')} annotations written: {_counts(r.annotations)}")

    pusher.follow(client, now_ms - int(window_s * 1000), interval, stop, written)


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def check_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
    since: SinceOpt = "6h",
) -> None:
    """Run every panel's SQL of every dashboard against the store, as Grafana would, and report
    rows per panel; exits 1 if any query fails or returns a shape its panel cannot draw."""
    from forewarn.dashboards.build import load_dashboards
    from forewarn.dashboards.macros import TimeRange
    from forewarn.dashboards.runner import run_dashboard, shape_error

    s = cliutil.settings(ctx, storage={"dsn": storage}, data_dir=data_dir)
    r = TimeRange.last(_since(since))
    client = cliutil.reader(s)
    bad = 0
    for dash in load_dashboards() + slo_dashboards_of(s):
        run = run_dashboard(client, dash, r)
        typer.echo(f"{run.title} ({run.uid})")
        for t in [*run.targets, *run.annotations]:
            problem = t.error or (shape_error(t.panel_type, t.fmt, t.frame) if len(t.frame) else None)
            bad += problem is not None
            where = f"{t.title}" + (f" [{t.repeat_value}]" if t.repeat_value else "") + f" {t.ref_id}"
            typer.echo(
                f"  {'FAIL' if problem else 'ok  '} {len(t.frame):6d} rows  {where}"
                + (f": {problem}" if problem else "")
            )
    if bad:
        cliutil.fail(f"{bad} panel queries failed", 1)


def report_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNGs and index.html.")] = Path(
        "report"
    ),
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
    since: SinceOpt = "6h",
    sample: Annotated[
        bool,
        typer.Option("--sample", help="First fill the store with the synthetic shop (80 minutes, scored)."),
    ] = False,
) -> None:
    """Render every panel of every dashboard from the store to PNG, with an index.html, for
    people who cannot open Grafana."""
    from forewarn.dashboards.build import load_dashboards
    from forewarn.dashboards.macros import TimeRange
    from forewarn.dashboards.report import render_report

    s = cliutil.settings(ctx, storage={"dsn": storage}, data_dir=data_dir)
    window = _since(since)
    now = time.time()
    if sample:
        info = _sample(s)
        now, window = info.end_ms / 1000 + 60, (info.end_ms - info.start_ms) / 1000 + 60
    r = TimeRange.last(window, now=now, max_points=REPORT_POINTS)
    with cliutil.reader(s) as client, _progress() as progress:
        index = render_report(client, load_dashboards(), r, out, progress=progress)
    typer.echo(f"report: {index} ({len(list(out.glob('*.png')))} PNGs)")


def _sample(s: Any) -> Any:
    """Fill the store with the synthetic shop: a write, so not into a store a running forewarn holds."""
    from forewarn.dashboards.sample import populate

    from forewarn.storage import open_storage
    from forewarn.storage.query import store_owner

    if (owner := store_owner(s)) is not None:
        cliutil.fail(
            f"--sample writes into the store, which the running forewarn (pid {owner.get('pid')}) holds; "
            "use another --data-dir for the sample, or stop it"
        )
    try:
        client = open_storage(s)
    except Exception as e:
        cliutil.fail(str(e), 1)
    try:
        with _progress() as progress:
            task = progress.add_task("sample: writing and scoring 80 minutes of the shop", total=None)
            info = populate(client, s)
            progress.update(task, total=1, completed=1)
    finally:
        client.close()
    typer.echo(f"sample: {sum(info.rows.values())} rows, {info.anomalies} anomalies")
    return info


def _progress() -> Any:
    """Rich progress bars on stderr (stdout stays for the result), quiet when not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def demo_cmd(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where the demo's store lives (default: a fresh temp dir)."),
    ] = None,
    short: Annotated[
        bool, typer.Option("--short", help="The CI form: the normal phase and two faults, about 3 min.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also render `forewarn report` here at the end.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON as the last line.")
    ] = False,
) -> None:
    """Run forewarn embedded with the test bed's shop (real services under OpenTelemetry
    auto-instrumentation), inject faults on a schedule, print the live timeline and a summary."""
    import json
    import tempfile

    from forewarn.dashboards.demo import Demo, DemoPlan, print_summary

    s = cliutil.settings(ctx)
    cliutil.setup_logging("WARNING")  # the timeline is the output; component logs would drown it
    target = data_dir or Path(tempfile.mkdtemp(prefix="forewarn-demo-"))
    plan = DemoPlan.short() if short else DemoPlan()
    typer.echo(
        f"forewarn demo: store in {target}; scenario {plan.scenario}, about {plan.wall_s / 60:.0f} min"
    )
    demo = Demo(s, target, plan, out=typer.echo)
    try:
        summary = demo.run()
    except Exception as e:
        cliutil.fail(f"demo failed: {e}", 1)
    print_summary(summary, typer.echo)
    if report is not None:
        from forewarn.dashboards.build import load_dashboards
        from forewarn.dashboards.macros import TimeRange
        from forewarn.dashboards.report import render_report

        from forewarn.storage import open_storage

        client = open_storage(demo.settings)
        index = render_report(
            client,
            load_dashboards(),
            TimeRange.last(plan.wall_s + 120, max_points=REPORT_POINTS),
            report,
        )
        typer.echo(f"report: {index}")
    if json_out:
        typer.echo(json.dumps(summary.as_dict()))
