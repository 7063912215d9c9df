"""End to end: alerts posted to the real router trigger hooks; the approvals API is mounted
on the router's listener and ``forewarn remediation`` (the real CLI, in a subprocess) uses it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from forewarn.alerts import server
from forewarn.alerts.remediation.signing import verify_signature
from test_remediation_support import SECRET, Receiver, audit_rows, until

CONFIG = """
route:
  receiver: team
  group_by: [alertname, service]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs:
      - url: {notify}/notify
        send_resolved: true
remediations:
  allowlist: ["{hooks}/"]
  secret_file: {secret}
  max_executions: 5
  window: 10m
  hooks:
    - name: restart-checkout
      matchers: ['alertname="HighLatency"', 'service=~"checkout|cart"']
      url: {hooks}/restart
      timeout: 2s
      retries: 2
      backoff: {{initial: 50ms, max: 100ms}}
      cooldown: 15m
      on_resolve: {{url: "{hooks}/undo"}}
    - name: page-dba
      matchers: ['alertname="DiskFull"']
      url: {hooks}/dba
      require_approval: true
"""


def _alert(name: str, service: str, ends: datetime | None = None) -> dict:
    a = {
        "labels": {"alertname": name, "service": service, "instance": "a:1"},
        "annotations": {"summary": f"{name} on {service}"},
        "startsAt": "2026-01-01T00:00:00Z",
    }
    if ends:
        a["endsAt"] = ends.strftime("%Y-%m-%dT%H:%M:%SZ")
    return a


def _receivers_and_config(tmp_path) -> tuple[Receiver, Receiver, Path]:
    """A hook receiver, a notification receiver and a router config pointing at both."""
    hooks, notify = Receiver(), Receiver()
    secret = tmp_path / "key"
    secret.write_text(SECRET)
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(CONFIG.format(notify=notify.url, hooks=hooks.url, secret=secret))
    return hooks, notify, cfg


def test_router_submits_flushes_to_remediation(store, settings, tmp_path) -> None:
    hooks, notify, cfg = _receivers_and_config(tmp_path)
    data = tmp_path / "router"

    def router():
        return server.AlertRouter(
            cfg, data_dir=data, storage_dsn=settings.storage_dsn, database=settings.storage.database,
            listen="127.0.0.1:0", api_tokens=["t0ken"],
        )  # fmt: skip

    async def main() -> None:
        r = router()
        await r.start()
        url = f"http://127.0.0.1:{r.port}"
        try:
            auth = {"Authorization": "Bearer t0ken"}
            async with httpx.AsyncClient(base_url=url, headers=auth) as http:
                alerts = [
                    _alert("HighLatency", "checkout"),
                    _alert("HighLatency", "search"),
                    _alert("DiskFull", "db"),
                ]
                assert (await http.post("/api/v2/alerts", json=alerts)).status_code == 200
                await until(lambda: hooks.count(path="/restart") == 1, what="the hook call")
                await until(lambda: notify.count() >= 1, what="the webhook notification")
                pending = (
                    await http.get("/api/forewarn/v1/remediations", params={"state": "pending"})
                ).json()
                assert [p["hook"] for p in pending] == ["page-dba"]
                denied = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "forewarn.cli", "remediation", "list", "--url", url],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert denied.returncode == 1 and "401" in denied.stderr  # the router's API auth applies
                out = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "forewarn.cli", "remediation", "approve", pending[0]["id"],
                     "--by", "oncall", "--url", url, "--token", "t0ken"],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert out.returncode == 0, out.stderr
                await until(lambda: hooks.count(path="/dba") == 1, what="the approved call")
        finally:
            await r.stop()

        # a restart re-flushes the same firing alert: not executed again; resolving runs the undo
        r = router()
        await r.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{r.port}", headers=auth) as http:
                await http.post("/api/v2/alerts", json=[_alert("HighLatency", "checkout")])
                await asyncio.sleep(1.5)  # > group_wait + group_interval: the group has flushed again
                past = datetime.now(UTC) - timedelta(seconds=1)
                await http.post("/api/v2/alerts", json=[_alert("HighLatency", "checkout", ends=past)])
                await until(lambda: hooks.count(path="/undo") == 1, what="the resolve action")
                assert await r.engine.audit_flushed(20)
        finally:
            await r.stop()

    try:
        asyncio.run(main())
    finally:
        hooks.close()
        notify.close()
    assert hooks.count(path="/restart") == 1
    assert hooks.count() == 3
    for req in hooks.requests:
        ts, sig = req.headers["X-Forewarn-Timestamp"], req.headers["X-Forewarn-Signature"]
        assert verify_signature(SECRET, ts, req.body, sig)
    undo = json.loads(hooks.requests[-1].body)
    assert undo["kind"] == "resolve" and undo["alert"]["status"] == "resolved"
    events = {(r["hook"], r["event"]) for r in audit_rows(store)}
    assert ("restart-checkout", "succeeded") in events and ("page-dba", "approved") in events


def test_router_reload_applies_new_remediation_hooks(store, settings, tmp_path) -> None:
    hooks, notify, cfg = _receivers_and_config(tmp_path)

    async def main() -> None:
        r = server.AlertRouter(
            cfg, data_dir=tmp_path / "router", storage_dsn=settings.storage_dsn,
            database=settings.storage.database, listen="127.0.0.1:0",
        )  # fmt: skip
        await r.start()
        try:
            cfg.write_text(
                cfg.read_text().replace(f"url: {hooks.url}/restart", f"url: {hooks.url}/v2/restart")
            )
            await r.reload()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{r.port}") as http:
                await http.post("/api/v2/alerts", json=[_alert("HighLatency", "cart")])
                await until(lambda: hooks.count(path="/v2/restart") == 1, what="the reloaded hook")
        finally:
            await r.stop()

    try:
        asyncio.run(main())
    finally:
        hooks.close()
        notify.close()
    assert hooks.count(path="/restart") == 0
