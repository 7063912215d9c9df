"""``forewarn slo list|status|run``: the SLOs of ``slo.dir``, their budget and burn in a table,
and one run of the SLO flow for stores that no ``forewarn up`` scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from forewarn import cliutil

StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123."),
]
DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Directory of OpenSLO / Sloth YAML files (default slo.dir).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per SLO instead of a table.")]


def register(app: typer.Typer) -> None:
    slo_app = typer.Typer(
        help="Service-level objectives: error budgets and burn-rate alerts.", no_args_is_help=True
    )
    slo_app.command("list")(list_cmd)
    slo_app.command("status")(status_cmd)
    slo_app.command("run")(run_cmd)
    slo_app.command("export")(export_cmd)
    app.add_typer(slo_app, name="slo")


def _settings(ctx: typer.Context, storage=None, data_dir=None, slo_dir=None):
    return cliutil.settings(
        ctx,
        storage={"dsn": storage},
        data_dir=str(data_dir) if data_dir else None,
        slo={"dir": str(slo_dir) if slo_dir else None},
    )


def _load(s):
    from forewarn.flows.slo_spec import SLOFileError, load_dir

    if s.slo.dir is None:
        cliutil.fail("no SLO directory: set slo.dir in the config (or FOREWARN_SLO__DIR), or pass --dir")
    try:
        return load_dir(s.slo.dir)
    except SLOFileError as e:
        cliutil.fail(str(e))


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for h in header:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*(str(c) for c in r))
    console = Console()
    if not console.is_terminal:  # piped: whole cells on one line each, so scripts can grep them
        console = Console(width=1000)
    console.print(t)


def list_cmd(ctx: typer.Context, slo_dir: DirOpt = None, as_json: JsonOpt = False) -> None:
    """The SLOs defined in the SLO directory (files are validated: errors name file and field)."""
    from forewarn.flows.slo_spec import describe

    slos = _load(_settings(ctx, slo_dir=slo_dir))
    if as_json:
        for s in slos:
            typer.echo(json.dumps(describe(s)))
        return
    rows = [
        (s.id, f"{s.objective * 100:g}%", s.window.label(),
         f"bad: {s.bad.text()}" if s.bad else f"good: {s.good.text()}", s.total.text(), s.alertname, s.file)
        for s in slos
    ]  # fmt: skip
    _table(("ID", "OBJECTIVE", "WINDOW", "EVENTS", "TOTAL", "ALERT", "FILE"), rows)


def _pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x * 100:.3f}%"


def _burn(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.2f}x"


def status_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
    slo_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each SLO now: SLI and budget left over its window, burn rates, alerts, budget forecast."""
    from forewarn.flows.slo import evaluate
    from forewarn.flows.slo_store import SLOStore

    s = _settings(ctx, storage, data_dir, slo_dir)
    slos = _load(s)
    with cliutil.reader(s) as r:
        store = SLOStore(r, s.storage.database)
        try:
            at = store.latest([x.sli_key for x in slos], int(s.slo.step_s * 1000))
            out = evaluate(store, slos, at, s.slo.forecast_horizon_s)
        except Exception as e:  # the store answers in its own words; the user gets one line
            if "UNKNOWN_TABLE" in str(e):
                cliutil.fail(
                    "this store has no SLO tables yet: `forewarn up` (or `forewarn slo run`) creates them", 1
                )
            cliutil.fail(f"cannot read the SLO buckets: {str(e).splitlines()[0]}", 1)
    if as_json:
        for x in slos:
            st = out.get(x.id)
            d = {"id": x.id, "objective": x.objective, "window": x.window.label(), "counted": st is not None}
            if st is not None:
                f = st.forecast
                d.update(at_ms=st.at_ms, good=st.good, total=st.total, sli=None if st.total == 0 else st.sli,
                         budget_remaining=st.budget_remaining, firing=st.firing,
                         burn={str(k): (v if math.isfinite(v) else None) for k, v in st.burn.items()},
                         exhaustion_s=None if f is None or not math.isfinite(f.eta_s) else f.eta_s,
                         exhaustion_band_s=None if f is None else [f.low_s if math.isfinite(f.low_s) else None,
                                                                   f.high_s if math.isfinite(f.high_s) else None])  # fmt: skip
            typer.echo(json.dumps(d))
        return
    rows = []
    for x in slos:
        st = out.get(x.id)
        if st is None:
            rows.append(
                (x.id, f"{x.objective * 100:g}%", x.window.label(), "not counted yet", "", "", "", "", "", "")
            )
            continue
        b = st.burn
        alerts = ", ".join(st.firing) or "ok"
        if st.forecast is not None and st.forecast.warns and st.forecast.eta_s > 0:
            alerts += " (budget forecast)"
        rows.append((
            x.id, f"{x.objective * 100:g}%", x.window.label(), _pct(st.sli), _pct(st.budget_remaining),
            _burn(b.get(300, math.nan)), _burn(b.get(3600, math.nan)), _burn(b.get(21600, math.nan)),
            alerts, st.forecast.text() if st.forecast else "needs 6 h of history",
        ))  # fmt: skip
    header = ("SLO", "OBJECTIVE", "WINDOW", "SLI", "BUDGET LEFT", "BURN 5m", "BURN 1h", "BURN 6h", "ALERTS",
              "BUDGET RUNS OUT")  # fmt: skip
    _table(header, rows)


def run_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
    slo_dir: DirOpt = None,
    alerts_url: Annotated[
        str | None, typer.Option(help="Router to post alerts to (default alerts.url; none: no alerts).")
    ] = None,
) -> None:
    """One run of the SLO flow: count every SLI up to the newest closed bucket, evaluate, alert
    (``forewarn up`` does this every slo.interval_s by itself)."""
    from forewarn.flows.runtime import Runtime

    from forewarn.storage.client import is_embedded
    from forewarn.storage.gateway import find_owner

    s = _settings(ctx, storage, data_dir, slo_dir)
    _load(s)
    if is_embedded(s.storage_dsn) and (owner := find_owner(s.storage_dsn)):
        cliutil.fail(
            f"the embedded store is held by a running forewarn process (pid {owner.get('pid')}); "
            "it runs the SLO flow already - use `forewarn slo status`"
        )
    typer.echo(json.dumps(Runtime(s, s.storage_dsn, alerts_url or s.alerts.url).slo()))


def export_cmd(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="openslo or sloth.")] = "openslo",
    slo_dir: DirOpt = None,
) -> None:
    """Print the SLOs of the directory as OpenSLO documents, or as Sloth specs (one per service),
    e.g. to move between the two formats or to see what forewarn understood."""
    import yaml
    from forewarn.flows.slo_spec import to_openslo, to_sloth

    if to not in ("openslo", "sloth"):
        cliutil.fail(f"--to {to!r}: use openslo or sloth")
    slos = _load(_settings(ctx, slo_dir=slo_dir))
    if to == "openslo":
        docs = [to_openslo(s) for s in slos]
    else:
        good = [s.id for s in slos if s.bad is None]
        if good:
            cliutil.fail(
                f"Sloth counts bad events; these SLOs count good ones: {', '.join(good)} (use --to openslo)"
            )
        services = sorted({s.service for s in slos})
        docs = [to_sloth([s for s in slos if s.service == svc]) for svc in services]
    typer.echo(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True), nl=False)
