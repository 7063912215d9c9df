"""Commands of forewarn.alerts: ``forewarn alerts`` (serve, check-config) and ``forewarn silence``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

alerts_app = typer.Typer(
    name="alerts",
    help="Alertmanager-compatible alert router.",
    invoke_without_command=True,
    no_args_is_help=False,
)
silence_app = typer.Typer(name="silence", help="Manage silences on a running router (Alertmanager v2 API).")

DEFAULT_URL = "http://127.0.0.1:9093"


@alerts_app.callback()
def alerts_main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="Alertmanager YAML configuration.")] = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT to serve the API on.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="State and audit store directory.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="ClickHouse DSN of the audit store (default chdb://DATA_DIR/chdb)."),
    ] = None,
    external_url: Annotated[
        str | None, typer.Option("--external-url", help="URL receivers see as externalURL.")
    ] = None,
    resend_grace: Annotated[
        float | None,
        typer.Option(
            "--resend-grace",
            help="Seconds stored alerts wait after a restart for their client to re-send them.",
        ),
    ] = None,
    web_config_file: Annotated[
        Path | None,
        typer.Option(
            "--web.config.file",
            "--web-config-file",
            help="Prometheus web configuration file: TLS and basic auth (as Alertmanager's flag).",
        ),
    ] = None,
) -> None:
    """Serve the router: ``forewarn alerts --config FILE --listen HOST:PORT [--data-dir DIR]``."""
    if ctx.invoked_subcommand is not None:
        return
    from forewarn.alerts.config import AlertsConfigError
    from forewarn.alerts.server import AlertRouter, serve

    from forewarn.cliutil import fail, settings

    s = settings(ctx)
    config = config or s.alerts.config_file
    if config is None:
        fail("forewarn alerts needs --config FILE (an Alertmanager YAML)")
    data = data_dir or s.data_dir / "alerts"
    router = AlertRouter(
        config,
        data_dir=data,
        storage_dsn=storage or (None if data_dir else s.storage.dsn),
        database=s.storage.database,
        listen=listen or s.alerts.listen,
        external_url=external_url or s.alerts.external_url,
        api_tokens=[t.get_secret_value() for t in s.alerts.api_tokens],
        max_alerts=s.alerts.max_alerts,
        resend_grace=s.alerts.resend_grace_s if resend_grace is None else resend_grace,
        web_config_file=web_config_file or s.alerts.web_config_file,
    )
    try:
        serve(router)
    except (AlertsConfigError, ValueError, OSError) as e:
        fail(str(e))


@alerts_app.command("check-config")
def check_config(file: Annotated[Path, typer.Argument(help="Alertmanager YAML to validate.")]) -> None:
    """Validate a router config as the router does when it starts; exit 1 naming every problem.

    Besides the schema: the remediation signing key is readable (secret_env set), TLS files
    load, and every hook URL lies inside the allowlist.
    """
    from forewarn.alerts.config import AlertsConfigError, load_config
    from forewarn.alerts.routing import build_tree

    try:
        cfg = load_config(file, startup_checks=True)
    except AlertsConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    routes = sum(1 for _ in build_tree(cfg.route).walk())
    typer.echo(
        f"{file}: SUCCESS - {routes} route(s), {len(cfg.receivers)} receiver(s), "
        f"{len(cfg.inhibit_rules)} inhibit rule(s), {len(cfg.intervals())} time interval(s)"
        + (", remediations" if cfg.remediations is not None else "")
    )


def _router(
    ctx: typer.Context, url: str | None, token: str | None, data_dir: Path | None
) -> tuple[str, str | None]:
    """The router to talk to: --url, alerts.url (file or environment), the forewarn running on
    --data-dir, then alerts.listen (see forewarn.cliutil.router)."""
    from forewarn import cliutil

    return cliutil.router(cliutil.settings(ctx, data_dir=data_dir), url, token)


def _client(url: str, token: str | None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=10.0, trust_env=False)


def _call(url: str, token: str | None, method: str, path: str, **kw: Any) -> Any:
    import httpx

    from forewarn.cliutil import fail

    try:
        with _client(url, token) as c:
            r = c.request(method, path, **kw)
    except httpx.HTTPError as e:
        fail(f"cannot reach the router at {url}: {e}")
    if r.status_code >= 400:
        fail(f"{method} {path}: HTTP {r.status_code}: {r.text.strip()}")
    return r.json() if r.content else None


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Router base URL (default: alerts.url, else the forewarn running on --data-dir, "
        "else alerts.listen).",
    ),
]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API bearer token (default: alerts.token).")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory of the running forewarn to talk to (default ./data)."),
]


@silence_app.command("add")
def silence_add(
    ctx: typer.Context,
    matchers: Annotated[list[str], typer.Argument(help="Matchers, e.g. alertname=Down 'job=~\"api|db\"'.")],
    comment: Annotated[str, typer.Option("--comment", "-c")] = "",
    author: Annotated[str, typer.Option("--author", "-a")] = "forewarn",
    duration: Annotated[str, typer.Option("--duration", "-d", help="e.g. 1h, 30m, 1d.")] = "1h",
    start: Annotated[str | None, typer.Option("--start", help="RFC 3339 start (default now).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a silence; prints its ID."""
    import time

    from forewarn.alerts.config import parse_duration
    from forewarn.alerts.labels import MatcherError, parse_matchers
    from forewarn.alerts.model import format_time, parse_time

    from forewarn.cliutil import fail

    try:
        ms = [m for s in matchers for m in parse_matchers(s)]
        d = parse_duration(duration)
        t0 = parse_time(start, "--start") if start else time.time()
    except (MatcherError, ValueError) as e:
        fail(str(e))
    if not ms:
        fail("at least one matcher required")
    body = {
        "matchers": [m.api_dict() for m in ms],
        "startsAt": format_time(t0),
        "endsAt": format_time(t0 + d),
        "createdBy": author,
        "comment": comment or "created by forewarn silence add",
    }
    url, token = _router(ctx, url, token, data_dir)
    typer.echo(_call(url, token, "POST", "/api/v2/silences", json=body)["silenceID"])


@silence_app.command("list")
def silence_list(
    ctx: typer.Context,
    expired: Annotated[bool, typer.Option("--expired", help="Also list expired silences.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List silences under a header: ID, state, matchers, end, author, comment."""
    from forewarn.alerts.labels import Matcher

    url, token = _router(ctx, url, token, data_dir)
    rows = [
        (
            s["id"],
            s["status"]["state"],
            "{" + ",".join(str(Matcher.from_api(m)) for m in s["matchers"]) + "}",
            s["endsAt"].replace("T", " ")[:16],
            s["createdBy"],
            s["comment"],
        )
        for s in _call(url, token, "GET", "/api/v2/silences")
        if expired or s["status"]["state"] != "expired"
    ]
    if not rows:
        typer.echo(f"no {'' if expired else 'active or pending '}silences at {url}")
        return
    from forewarn.cliutil import print_table

    print_table(("ID", "STATE", "MATCHERS", "ENDS", "AUTHOR", "COMMENT"), rows)


@silence_app.command("expire")
def silence_expire(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(help="Silence IDs.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Expire silences now."""
    url, token = _router(ctx, url, token, data_dir)
    for sid in ids:
        _call(url, token, "DELETE", f"/api/v2/silence/{sid}")
        typer.echo(f"expired {sid}")


def register(app: typer.Typer) -> None:
    """Add this component's commands to the ``forewarn`` CLI."""
    app.add_typer(alerts_app)
    app.add_typer(silence_app)
    try:
        from forewarn.alerts.remediation import cli as remediation_cli
    except ImportError:  # the remediation package is optional for the router itself
        return
    if hasattr(remediation_cli, "register"):
        remediation_cli.register(app)
