"""Commands of forewarn.flows: ``forewarn flows score|train|status``, ``forewarn backfill``,
``forewarn backtest``, ``forewarn anomaly list|mark``."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from forewarn import cliutil

StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123."),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded store, Prefect home).")
]
TimeArg = Annotated[str, typer.Option(help="ISO-8601 time (UTC if no zone), epoch seconds, or -2h/-30m/-7d.")]


def register(app: typer.Typer) -> None:
    """Add this component's commands to the ``forewarn`` CLI."""
    flows_app = typer.Typer(help="Signals, scoring, training (Prefect flows).", no_args_is_help=True)
    flows_app.command("score")(score_cmd)
    flows_app.command("train")(train_cmd)
    flows_app.command("status")(status_cmd)
    app.add_typer(flows_app, name="flows")
    app.command("backfill")(backfill_cmd)
    app.command("backtest")(backtest_cmd)
    anomaly_app = typer.Typer(help="Inspect anomalies and give feedback.", no_args_is_help=True)
    anomaly_app.command("list")(anomaly_list_cmd)
    anomaly_app.command("mark")(anomaly_mark_cmd)
    app.add_typer(anomaly_app, name="anomaly")
    from forewarn.flows import slo_cli

    slo_cli.register(app)


def parse_time(value: str, now: float | None = None) -> int:
    """Epoch milliseconds of a CLI time.

    >>> parse_time("2026-01-01T00:00:00Z")
    1767225600000
    >>> parse_time("-1h", now=7200.0)
    3600000
    """
    now = time.time() if now is None else now
    v = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if v.startswith("-") and v[-1:] in units and v[1:-1].replace(".", "", 1).isdigit():
        return int((now - float(v[1:-1]) * units[v[-1]]) * 1000)
    try:
        return int(float(v) * 1000)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time, epoch seconds or -<n>[smhd]") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _settings(
    ctx: typer.Context, storage: str | None, data_dir: Path | None, threshold: float | None = None, **flows
):
    flows = {k: v for k, v in flows.items() if v is not None}
    return cliutil.settings(
        ctx,
        storage={"dsn": storage},
        data_dir=str(data_dir) if data_dir else None,
        flows=flows,
        detectors={"threshold": threshold},
    )


def _own_store(s) -> None:
    """Scoring needs the store in this process; a running ``forewarn up`` holds an embedded one."""
    from forewarn.storage.client import is_embedded
    from forewarn.storage.gateway import find_owner

    if is_embedded(s.storage_dsn) and (owner := find_owner(s.storage_dsn)):
        cliutil.fail(
            f"the embedded store is held by a running forewarn process (pid {owner.get('pid')}); "
            "it scores continuously already - stop it first, or use a ClickHouse server DSN"
        )


def _runtime(s, alerts_url: str | None = None, prefect: bool = True):
    """The flows module bound to these settings: Prefect flows, or plain functions (--inline)."""
    if prefect and s.flows.orchestrator == "prefect":
        from forewarn.flows.runtime import prepare_prefect

        prepare_prefect(s.data_dir)
        from forewarn.flows import prefect_flows

        prefect_flows.configure(s, s.storage_dsn, alerts_url)
        return prefect_flows
    return None


def score_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    alerts_url: Annotated[
        str | None, typer.Option(help="Router to post alerts to (default alerts.url).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Score up to this time, then exit (default: run forever).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Where a fresh watermark starts (no checkpoint yet).")
    ] = None,
    shard: Annotated[int | None, typer.Option(help="This worker's shard (0-based).")] = None,
    shards: Annotated[int | None, typer.Option(help="Number of workers sharing the series.")] = None,
    inline: Annotated[
        bool, typer.Option(help="Call the score step directly instead of as Prefect flow runs.")
    ] = False,
    max_batch_buckets: Annotated[int | None, typer.Option(help="Buckets per micro-batch.")] = None,
) -> None:
    """Score continuously: micro-batches over the watermark, exactly once, until stopped (or --until)."""
    s = _settings(ctx, storage, data_dir, shard=shard, shards=shards, max_batch_buckets=max_batch_buckets,
                  orchestrator="inline" if inline else None)  # fmt: skip
    _own_store(s)
    url = alerts_url or s.alerts.url
    stop = cliutil.wait_for_shutdown()
    pf = _runtime(s, url)
    if pf:
        rt = pf.runtime()
    else:
        from forewarn.flows.runtime import Runtime

        rt = Runtime(s, s.storage_dsn, url)
    eng = rt.engine("live", s.flows.shard, s.flows.shards)
    if start:
        eng.start_at(parse_time(start))
    until_ms = parse_time(until) if until else None
    total = 0

    def echo(r: dict) -> None:
        keys = ("start_ms", "end_ms", "points", "anomalies", "incidents")
        typer.echo(json.dumps({k: r[k] for k in keys}), nl=True)
        sys.stdout.flush()

    while not stop.is_set():
        if pf:
            reps = pf.score_flow(
                shard=s.flows.shard, shards=s.flows.shards, until_ms=until_ms, max_batches=10
            )
            for r in reps:
                echo(r)
        else:
            reps = []
            while not stop.is_set() and (r := eng.run_once(until_ms)) is not None:
                reps.append(r)
                echo(r.as_dict())
        total += len(reps)
        if until_ms is not None and eng.watermark >= until_ms // eng.step_ms * eng.step_ms:
            break
        if not reps:
            stop.wait(s.flows.interval_s)
    typer.echo(f"scored {total} micro-batches; watermark {datetime.fromtimestamp(eng.watermark / 1000, UTC).isoformat()}",
               err=True)  # fmt: skip


def train_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    history: Annotated[str, typer.Option(help="How much history to fit on, e.g. 7d, 12h.")] = "7d",
    inline: Annotated[bool, typer.Option(help="Run directly instead of as a Prefect flow run.")] = False,
) -> None:
    """Fit the batch models (seasonal baselines, IsolationForest per service); store new versions."""
    s = _settings(ctx, storage, data_dir, orchestrator="inline" if inline else None)
    _own_store(s)
    history_s = (time.time() * 1000 - parse_time("-" + history)) / 1000
    pf = _runtime(s)
    if pf:
        out = pf.train_flow(history_s=history_s)
    else:
        from forewarn.flows.runtime import Runtime

        out = Runtime(s, s.storage_dsn).train(history_s)
    typer.echo(json.dumps({"models": out}))
    if not out:
        typer.echo("no model trained: not enough service-level RED history", err=True)


def status_cmd(ctx: typer.Context, storage: StorageOpt = None, data_dir: DataDirOpt = None) -> None:
    """Watermarks, series, cardinality overflow, models and anomaly counts, as JSON."""
    out = _from_store(_settings(ctx, storage, data_dir), lambda st: st.status())
    typer.echo(json.dumps(out, indent=2, default=str))


def _from_store(s, read):
    """``read(store)`` on the store of these settings (through the process that holds an embedded
    store, when one does), with store errors as a clear message."""
    from forewarn.flows.store import cli_store

    try:
        return read(cli_store(s))
    except (RuntimeError, ConnectionError, ValueError) as e:
        cliutil.fail(str(e), 1)


def _plain(v):
    """JSON-safe values: NaN as null, like ClickHouse's own JSON output."""
    return None if isinstance(v, float) and v != v else v


def _replay(ctx, storage, data_dir, start, end, run, threshold, warmup, inline, alerts_config=None):
    s = _settings(ctx, storage, data_dir, threshold=threshold, warmup_points=warmup,
                  orchestrator="inline" if inline else None)  # fmt: skip
    _own_store(s)
    a, b = parse_time(start), parse_time(end)
    if b <= a:
        cliutil.fail("--end must be after --start")
    pf = _runtime(s)
    if alerts_config is not None and not Path(alerts_config).is_file():
        cliutil.fail(f"alerts config not found: {alerts_config}")
    if pf:
        if alerts_config is None and ctx.command.name == "backfill":
            return pf.backfill_flow(start_ms=a, end_ms=b, run=run)
        return pf.backtest_flow(start_ms=a, end_ms=b, run=run, alerts_config=alerts_config)
    from forewarn.flows.runtime import Runtime

    rt = Runtime(s, s.storage_dsn)
    return rt.replay(run, a, b) if ctx.command.name == "backfill" else rt.backtest(run, a, b, alerts_config)


def backfill_cmd(
    ctx: typer.Context,
    start: TimeArg,
    end: TimeArg,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    run: Annotated[
        str | None, typer.Option(help="Name the results are stored under (default backfill-<time>).")
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Try another detectors.threshold.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Override flows.warmup_points.")] = None,
    inline: Annotated[bool, typer.Option(help="Run directly instead of as a Prefect flow run.")] = False,
) -> None:
    """Run the detectors over a past range; anomalies and incidents are stored under --run."""
    run = run or f"backfill-{int(time.time())}"
    typer.echo(json.dumps(_replay(ctx, storage, data_dir, start, end, run, threshold, warmup, inline)))


def backtest_cmd(
    ctx: typer.Context,
    start: TimeArg,
    end: TimeArg,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    alerts_config: Annotated[
        str | None, typer.Option(help="Alertmanager-format routing config to count pages with.")
    ] = None,
    run: Annotated[str | None, typer.Option(help="Name of this backtest (default backtest-<time>).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Try another detectors.threshold.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Override flows.warmup_points.")] = None,
    inline: Annotated[bool, typer.Option(help="Run directly instead of as a Prefect flow run.")] = False,
) -> None:
    """How many anomalies, alerts and pages this configuration would have produced over a past range."""
    run = run or f"backtest-{int(time.time())}"
    out = _replay(ctx, storage, data_dir, start, end, run, threshold, warmup, inline, alerts_config)
    typer.echo(json.dumps(out, indent=2))


def anomaly_list_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    run: Annotated[str, typer.Option(help="live, or a backfill/backtest run name.")] = "live",
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
) -> None:
    """The newest anomalies, one JSON object per line."""
    s = _settings(ctx, storage, data_dir)
    for r in _from_store(s, lambda st: st.anomaly_list(run, int(limit))):
        typer.echo(json.dumps({k: _plain(v) for k, v in r.items()}, default=str))


def anomaly_mark_cmd(
    ctx: typer.Context,
    anomaly_id: Annotated[str, typer.Argument(help="Anomaly id (from `forewarn anomaly list`).")],
    false_positive: Annotated[
        bool, typer.Option("--false-positive", help="Not an incident: suppress the pattern.")
    ] = False,
    true_positive: Annotated[
        bool, typer.Option("--true-positive", help="A real incident (kept for the backtest).")
    ] = False,
    note: Annotated[str, typer.Option(help="Free text kept with the mark.")] = "",
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Record feedback on an anomaly; false positives raise that series' bar in the running score flow."""
    if false_positive == true_positive:
        cliutil.fail("give exactly one of --false-positive or --true-positive")
    if not anomaly_id.isdigit():
        cliutil.fail(f"anomaly id must be a number, not {anomaly_id!r}")
    s = _settings(ctx, storage, data_dir)
    label = "false_positive" if false_positive else "true_positive"

    def mark(store):
        found = store.anomaly(int(anomaly_id))
        if found:
            store.write_feedback(int(anomaly_id), int(found["series_id"]), found["detector"], label, note[:2000],
                                 time.time() * 1000)  # fmt: skip
        return found

    found = _from_store(s, mark)
    if not found:
        cliutil.fail(f"no anomaly {anomaly_id}", 1)
    typer.echo(json.dumps({"anomaly_id": anomaly_id, "series_id": str(found["series_id"]), "label": label}))
