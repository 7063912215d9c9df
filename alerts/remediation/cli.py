"""``forewarn remediation list|approve|deny``: the approvals API from a terminal (httpx)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

URL = typer.Option("--url", envvar="FOREWARN_ALERTS__URL", help="Base URL of the forewarn alerts router.")
TOKEN = typer.Option(
    "--token", envvar="FOREWARN_ALERTS_TOKEN", help="Bearer token, when the router requires one."
)
PATH = "/api/forewarn/v1/remediations"

remediation = typer.Typer(
    name="remediation", help="List, approve and deny remediation actions.", no_args_is_help=True
)


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
    state: Annotated[
        str | None, typer.Option("--state", help="pending, queued, succeeded, failed, denied, ...")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    url: Annotated[str, URL] = "http://127.0.0.1:9093",
    token: Annotated[str | None, TOKEN] = None,
) -> None:
    """List remediation actions, newest first (--state pending: those awaiting approval)."""
    actions = _call("GET", url, PATH, token, params={"state": state} if state else None)
    if as_json:
        typer.echo(json.dumps(actions, indent=2))
        return
    if not actions:
        typer.echo("no remediation actions" + (f" in state {state}" if state else ""))
        return
    typer.echo(f"{'ID':16}  {'STATE':10}  {'HOOK':20}  {'KIND':7}  {'ALERT':24}  {'CREATED':20}  DETAIL")
    for a in actions:
        detail = a["reason"] or a["lastError"]
        if a["state"] == "pending":
            detail = f"expires {_when(a['expiresAt'])}"
        elif a["decidedBy"]:
            detail = f"by {a['decidedBy']}" + (f" ({detail})" if detail else "")
        typer.echo(
            f"{a['id']:16}  {a['state']:10}  {a['hook'][:20]:20}  {a['kind']:7}  "
            f"{a['labels'].get('alertname', '')[:24]:24}  {_when(a['createdAt']):20}  {detail}"
        )


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
    action_id: Annotated[str, typer.Argument(help="Action id from `forewarn remediation list`.")],
    by: Annotated[str | None, typer.Option("--by", help="Who approves (default: your user name).")] = None,
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    url: Annotated[str, URL] = "http://127.0.0.1:9093",
    token: Annotated[str | None, TOKEN] = None,
) -> None:
    """Approve a pending action; it runs right away (still behind the breaker)."""
    _decide("approve", action_id, by, comment, url, token)


@remediation.command("deny")
def deny_cmd(
    action_id: Annotated[str, typer.Argument(help="Action id from `forewarn remediation list`.")],
    by: Annotated[str | None, typer.Option("--by", help="Who denies (default: your user name).")] = None,
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    url: Annotated[str, URL] = "http://127.0.0.1:9093",
    token: Annotated[str | None, TOKEN] = None,
) -> None:
    """Deny a pending action; it never runs."""
    _decide("deny", action_id, by, comment, url, token)


def register(app: typer.Typer) -> None:
    """Add ``forewarn remediation`` (once, whichever module registers it first)."""
    if any(g.name == "remediation" for g in app.registered_groups):
        return
    app.add_typer(remediation, name="remediation")
