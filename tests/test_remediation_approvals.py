"""Manual approval of remediation actions through the HTTP API and ``forewarn remediation``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import typer
import uvicorn
from forewarn.alerts.remediation import cli as remediation_cli
from forewarn.alerts.remediation.api import routes
from forewarn.alerts.remediation.engine import RemediationEngine
from starlette.applications import Starlette
from test_remediation_support import Receiver, alert, audit_rows, config, running, settled, until
from typer.testing import CliRunner

from forewarn.net import free_port

API = "/api/forewarn/v1/remediations"


@asynccontextmanager
async def serving(eng: RemediationEngine) -> AsyncIterator[str]:
    """The approvals routes on a real uvicorn server on 127.0.0.1."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=routes(eng)), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started, what="uvicorn to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def cli(*args: str) -> tuple[int, str]:
    app = typer.Typer()
    remediation_cli.register(app)
    remediation_cli.register(app)  # registering twice (router and forewarn CLI) is harmless
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_approval_flow_via_api_and_cli_survives_restart(store, settings, tmp_path, receiver) -> None:
    cfg = config(receiver.url, tmp_path, require_approval=True)

    async def main() -> None:
        async with running(cfg, settings) as eng:
            await eng.submit("g1", "team", [alert(1)])
            await eng.submit("g2", "team", [alert(2)])
            await eng.submit("g3", "team", [alert(3)])
            await settled(eng)
        assert receiver.count() == 0  # nothing runs without approval
        # pending approvals survive a restart
        async with (
            running(cfg, settings) as eng,
            serving(eng) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            pending = (await http.get(API, params={"state": "pending"})).json()
            assert sorted(p["groupKey"] for p in pending) == ["g1", "g2", "g3"]
            ids = {p["groupKey"]: p["id"] for p in pending}

            # CLI: list, approve
            code, out = await asyncio.to_thread(
                cli, "remediation", "list", "--state", "pending", "--url", url
            )
            assert code == 0, out
            assert ids["g1"] in out and "pending" in out and "Boom" in out
            code, out = await asyncio.to_thread(
                cli, "remediation", "approve", ids["g1"], "--by", "alice", "-m", "go", "--url", url
            )
            assert code == 0, out
            assert "queued by alice" in out
            await until(lambda: receiver.count() == 1, what="the approved call")

            # API: deny one, approve one
            r = await http.post(f"{API}/{ids['g2']}/deny", json={"by": "bob", "comment": "not now"})
            assert r.status_code == 200 and r.json()["state"] == "denied"
            r = await http.post(f"{API}/{ids['g3']}/approve", json={"by": "carol"})
            assert r.status_code == 200
            await until(lambda: receiver.count() == 2, what="the second approved call")

            # decided twice, unknown id, bad body
            r = await http.post(f"{API}/{ids['g2']}/approve", json={"by": "eve"})
            assert r.status_code == 409 and "denied" in r.json()["error"]
            assert (await http.post(f"{API}/nope/approve", json={"by": "eve"})).status_code == 404
            assert (await http.post(f"{API}/{ids['g1']}/approve", content=b"{")).status_code == 400
            assert (await http.post(f"{API}/{ids['g1']}/approve", json={})).status_code == 400
            assert (await http.get(API, params={"state": "bogus"})).status_code == 400
            status = (await http.get(f"{API}/status")).json()
            assert status["breakers"] == {"fix": "closed"} and status["auditDropped"] == 0
            code, out = await asyncio.to_thread(cli, "remediation", "deny", ids["g2"], "--url", url)
            assert code == 1 and "409" in out

            await settled(eng)
            states = {a["groupKey"]: a["state"] for a in (await http.get(API)).json()}
            assert states == {"g1": "succeeded", "g2": "denied", "g3": "succeeded"}
            code, out = await asyncio.to_thread(cli, "remediation", "list", "--url", url)
            assert "by alice" in out and "by bob" in out

    asyncio.run(main())
    approved_by = {r.headers["Idempotency-Key"]: r.body for r in receiver.requests}
    assert len(approved_by) == 2
    events = [(r["event"], r["actor"]) for r in audit_rows(store, "event IN ('approved', 'denied')")]
    assert sorted(events) == [("approved", "alice"), ("approved", "carol"), ("denied", "bob")]
    assert len(audit_rows(store, "event = 'approval_requested'")) == 3


def test_pending_approval_expires(store, settings, tmp_path, receiver) -> None:
    cfg = config(receiver.url, tmp_path, require_approval=True, approval_timeout="1s")

    async def main() -> None:
        async with running(cfg, settings) as eng, serving(eng) as url:
            await eng.submit("g", "team", [alert(1)])
            await settled(eng)
            [a] = await eng.list_actions(state="pending")
            await asyncio.sleep(1.2)
            async with httpx.AsyncClient(base_url=url) as http:
                r = await http.post(f"{API}/{a.id}/approve", json={"by": "late"})
                assert r.status_code == 409 and "expired" in r.json()["error"]
            await settled(eng)

    asyncio.run(main())
    assert receiver.count() == 0
    assert [r["outcome"] for r in audit_rows(store, "event = 'approval_expired'")] == ["expired"]


def test_cli_reports_an_unreachable_router() -> None:
    code, out = cli("remediation", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "cannot reach" in out
