"""``forewarn remediation list|approve|deny``: the approvals API from a terminal (httpx)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

URL = typer.Option(
    "--url",
    help="Router base URL (default: alerts.url, else the forewarn running on --data-dir, else alerts.listen).",
)
TOKEN = typer.Option("--token", help="Bearer token, when the router requires one (default: alerts.token).")
DATA_DIR = typer.Option(
    "--data-dir", help="Data directory of the running forewarn to talk to (default ./data)."
)
PATH = "/api/forewarn/v1/remediations"

remediation = typer.Typer(
    name="remediation", help="List, approve and deny remediation actions.", no_args_is_help=True
)


def _router(
    ctx: typer.Context, url: str | None, token: str | None, data_dir: Path | None
) -> tuple[str, str | None]:
    from forewarn import cliutil

    return cliutil.router(cliutil.settings(ctx, data_dir=data_dir), url, token)


def _call(method: str, url: str, path: str, token: str | None, **kw: Any) -> Any:
    import httpx

    from forewarn.cliutil import fail

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.request(
            method, url.rstrip("/") + path, headers=headers, timeout=10.0, trust_env=False, **kw
        )
    except httpx.HTTPError as e:
        fail(f"cannot reach the router at {url}: {e}")
    if resp.status_code >= 400:
        try:
            data = resp.json()
        except ValueError:
            data = resp.text.strip()
        msg = data.get("error", data) if isinstance(data, dict) else data
        fail(f"{method} {path}: HTTP {resp.status_code}: {msg}", code=1)
    return resp.json()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts else "-"


@remediation.command("list")
def list_cmd(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option("--state", help="pending, queued, succeeded, failed, denied, ...")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    url: Annotated[str | None, URL] = None,
    token: Annotated[str | None, TOKEN] = None,
    data_dir: Annotated[Path | None, DATA_DIR] = None,
) -> None:
    """List remediation actions, newest first (--state pending: those awaiting approval)."""
    url, token = _router(ctx, url, token, data_dir)
    actions = _call("GET", url, PATH, token, params={"state": state} if state else None)
    if as_json:
        typer.echo(json.dumps(actions, indent=2))
        return
    if not actions:
        typer.echo("no remediation actions" + (f" in state {state}" if state else ""))
        return
    rows = []
    for a in actions:
        detail = a["reason"] or a["lastError"]
        if a["state"] == "pending":
            detail = f"expires {_when(a['expiresAt'])}"
        elif a["decidedBy"]:
            detail = f"by {a['decidedBy']}" + (f" ({detail})" if detail else "")
        rows.append(
            (
                a["id"],
                a["state"],
                a["hook"],
                a["kind"],
                a["labels"].get("alertname", ""),
                _when(a["createdAt"]),
                detail or "",
            )
        )
    from forewarn.cliutil import print_table

    print_table(("ID", "STATE", "HOOK", "KIND", "ALERT", "CREATED", "DETAIL"), rows)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers): still say it came from the CLI
        return "cli"


def _decide(verb: str, action_id: str, by: str | None, comment: str, url: str, token: str | None) -> None:
    who = by or _user()
    a = _call("POST", url, f"{PATH}/{action_id}/{verb}", token, json={"by": who, "comment": comment})
    typer.echo(f"{a['id']}: {a['state']} by {a['decidedBy']}")


@remediation.command("approve")
def approve_cmd(
    ctx: typer.Context,
    action_id: Annotated[str, typer.Argument(help="Action id from `forewarn remediation list`.")],
    by: Annotated[str | None, typer.Option("--by", help="Who approves (default: your user name).")] = None,
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    url: Annotated[str | None, URL] = None,
    token: Annotated[str | None, TOKEN] = None,
    data_dir: Annotated[Path | None, DATA_DIR] = None,
) -> None:
    """Approve a pending action; it runs right away (still behind the breaker)."""
    url, token = _router(ctx, url, token, data_dir)
    _decide("approve", action_id, by, comment, url, token)


@remediation.command("deny")
def deny_cmd(
    ctx: typer.Context,
    action_id: Annotated[str, typer.Argument(help="Action id from `forewarn remediation list`.")],
    by: Annotated[str | None, typer.Option("--by", help="Who denies (default: your user name).")] = None,
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    url: Annotated[str | None, URL] = None,
    token: Annotated[str | None, TOKEN] = None,
    data_dir: Annotated[Path | None, DATA_DIR] = None,
) -> None:
    """Deny a pending action; it never runs."""
    url, token = _router(ctx, url, token, data_dir)
    _decide("deny", action_id, by, comment, url, token)


def register(app: typer.Typer) -> None:
    """Add ``forewarn remediation`` (once, whichever module registers it first)."""
    if any(g.name == "remediation" for g in app.registered_groups):
        return
    app.add_typer(remediation, name="remediation")
