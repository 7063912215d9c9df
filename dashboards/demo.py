"""``forewarn demo``: the whole product in a few minutes, on nothing but this machine.

It starts forewarn embedded (collector, alert router with a remediation hook, score flow: the
same :class:`forewarn.up.Up` as ``forewarn up``), a local "pager" and "remediation endpoint" that
record what forewarn sends them, and the test bed (:mod:`forewarn.testbed`): five shop services
under the real OpenTelemetry auto-instrumentation, users with a compressed daily curve, a
promotion surge, a deploy and new routes, then faults on a schedule. Nothing is backdated: like
a new user, forewarn starts cold. Time is compressed by the plan's ``scale`` (forewarn's bucket
and time windows shrink by the same factor); times printed are the scenario's (virtual) seconds.

A timeline is printed as things happen (changes, faults, detections, alerts, remediations) and a
summary at the end, scored by the test bed's judge (:mod:`forewarn.testbed.judge`, webhook
notifications only): faults injected and paged for the right service, time to page, false pages.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forewarn.config import FlowsSettings, Settings
from forewarn.testbed.judge import Verdict
from forewarn.testbed.run import SCALED_FLOWS_KEYS, Bed, RunOptions
from forewarn.testbed.timeline import Event, Scenario

SECRET_ENV = "FOREWARN_DEMO_HOOK_SECRET"


@dataclass
class DemoPlan:
    scenario: str = "full"
    scale: float = 0.4  # the full scenario (~16 virtual min) in about 6.5 min
    rate: float = 8.0  # users' requests per second at the frontend
    seed: int = 1

    @classmethod
    def short(cls) -> DemoPlan:
        """The CI form (about 3 minutes): the normal phase and two faults at scale 0.2."""
        return cls(scenario="short", scale=0.2)

    def build(self) -> Scenario:
        return Scenario.preset(self.scenario).scaled(self.scale)

    @property
    def wall_s(self) -> float:
        s = self.build()
        return s.wall(s.duration_s)


@dataclass
class Detection:
    injection: Event
    first_anomaly_s: float | None = None  # virtual seconds after onset
    first_alert_s: float | None = None

    @property
    def detected(self) -> bool:
        return self.first_alert_s is not None


@dataclass
class DemoSummary:
    injected: int
    detected: int
    detections: list[Detection]
    false_alerts: list[dict]
    alerts: int
    anomalies: int
    remediations: int
    spans_sent: int
    verdict: Verdict | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "incidents_injected": self.injected,
            "incidents_detected": self.detected,
            "time_to_detect_s": {
                f"{d.injection.kind} on {d.injection.service}": d.first_alert_s for d in self.detections
            },
            "time_to_first_anomaly_s": {
                f"{d.injection.kind} on {d.injection.service}": d.first_anomaly_s for d in self.detections
            },
            "false_alerts": len(self.false_alerts),
            "alerts": self.alerts,
            "anomalies": self.anomalies,
            "remediations": self.remediations,
            "spans_sent": self.spans_sent,
            "passed": bool(self.verdict and self.verdict.passed),
        }


class Receiver:
    """The demo's pager (Alertmanager webhook receiver) and remediation endpoint, on 127.0.0.1."""

    def __init__(self) -> None:
        self.notifications: list[tuple[float, dict]] = []
        self.hook_calls: list[tuple[float, dict]] = []
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import socket

        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def pager(req: Request) -> JSONResponse:
            self.notifications.append((time.time(), await req.json()))
            return JSONResponse({"status": "ok"})

        async def remediate(req: Request) -> JSONResponse:
            self.hook_calls.append((time.time(), await req.json()))
            return JSONResponse({"status": "restarted"})

        app = Starlette(
            routes=[
                Route("/pager", pager, methods=["POST"]),
                Route("/remediate", remediate, methods=["POST"]),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started and time.time() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def alerts_config(receiver_url: str) -> str:
    return f"""\
# Written by forewarn demo: page the demo's pager, and let a guarded hook "restart" the suspect.
route:
  receiver: pager
  group_by: ['...']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: pager
    webhook_configs:
      - url: {receiver_url}/pager
        send_resolved: true
remediations:
  allowlist: ["{receiver_url}/"]
  secret_env: {SECRET_ENV}
  hooks:
    - name: restart-suspect
      matchers: ['alertname="ForewarnIncident"']
      url: {receiver_url}/remediate
      cooldown: 30s
      retries: 1
"""


def _settings(base: Settings, data_dir: Path, plan: DemoPlan) -> Settings:
    from forewarn.config import load_settings

    fields = FlowsSettings.model_fields
    scaled = {k: fields[k].default * plan.scale for k in SCALED_FLOWS_KEYS if k in fields}
    return load_settings(
        overrides={
            "data_dir": str(data_dir),
            "log_level": "WARNING",
            "storage": {"dsn": f"chdb://{(data_dir / 'chdb').resolve()}", "database": base.storage.database},
            "collector": {"host": "127.0.0.1", "grpc_port": 0, "http_port": 0},
            "alerts": {"listen": "127.0.0.1:0"},
            # forewarn's own defaults on the scenario's compressed clock; flows run inline (no
            # Prefect server to start, which would eat the first compressed minutes)
            "flows": {**scaled, "orchestrator": "inline"},
        }
    )


class Demo:
    def __init__(
        self, base: Settings, data_dir: Path, plan: DemoPlan | None = None, out: Callable[[str], None] = print
    ):
        self.plan = plan or DemoPlan()
        self.data_dir = data_dir
        self.settings = _settings(base, data_dir, self.plan)
        self.out = out
        self.receiver = Receiver()
        self.bed = Bed(
            RunOptions(
                self.plan.build(), data_dir / "testbed", rate=self.plan.rate, seed=self.plan.seed, out=out
            )
        )

    def say(self, kind: str, text: str) -> None:
        self.bed.say(f"{kind:<6} {text}")

    def run(self) -> DemoSummary:
        from forewarn.up import Up

        s = self.settings
        os.environ.setdefault(SECRET_ENV, secrets.token_hex(16))
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.receiver.start()
        cfg = s.data_dir / "demo-alertmanager.yml"
        cfg.write_text(alerts_config(self.receiver.url))
        up = Up(s, alerts_config=cfg, alerts_listen="127.0.0.1:0")
        loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(target=loop.run_forever, name="forewarn-demo-up", daemon=True)
        loop_thread.start()
        try:
            asyncio.run_coroutine_threadsafe(up.start(), loop).result(180)
            self.out(
                f"forewarn up: OTLP gRPC 127.0.0.1:{up.collector.grpc_port}, router :{up.router.port}, store {s.data_dir}"
            )
            self.bed.start_services(up.collector.grpc_port, up.collector.http_port)
            self.out("normal traffic from the start: forewarn learns while it watches (no history)")
            return self._drive()
        finally:
            self.bed.stop()
            asyncio.run_coroutine_threadsafe(up.stop(), loop).result(180)
            loop.call_soon_threadsafe(loop.stop)
            loop_thread.join(10)
            self.receiver.stop()

    def _drive(self) -> DemoSummary:
        from forewarn.storage import connect

        client = connect(self.settings.storage_dsn, database=self.settings.storage.database)
        seen: set[int] = set()
        said: dict[tuple[str, str], float] = {}
        counts = {"notes": 0, "hooks": 0, "progress": 0.0}

        def tick() -> None:
            now = time.time()
            for _aid, svc, name, expl in self._new_anomalies(client, seen, int(self.bed.start * 1000)):
                if (
                    now - said.get((svc, name), 0) > 30
                ):  # one line per signal and half-minute keeps it readable
                    said[(svc, name)] = now
                    self.say("detect", expl[:120])
            for _at, note in self.receiver.notifications[counts["notes"] :]:
                for a in note.get("alerts", []):
                    lab = a.get("labels", {})
                    self.say(
                        "ALERT", f"{a.get('status')} {lab.get('alertname')} service={lab.get('service')}"
                    )
            counts["notes"] = len(self.receiver.notifications)
            for _at, call in self.receiver.hook_calls[int(counts["hooks"]) :]:
                labels = (call.get("alert") or {}).get("labels") or {}
                self.say(
                    "REMEDIATE",
                    f"{call.get('hook')} called ({call.get('kind')}) for service={labels.get('service')}",
                )
            counts["hooks"] = len(self.receiver.hook_calls)
            if now - counts["progress"] >= 20:
                counts["progress"] = now
                self.say("progress", f"{len(seen)} anomalies, {counts['notes']} notifications")

        self.bed.play(tick)
        verdict = self.bed.judge(self.receiver.notifications)
        summary = self._summary(client, verdict)
        client.close()
        return summary

    def _new_anomalies(self, client: Any, seen: set[int], since_ms: int) -> list[tuple]:
        rows = client.query(
            "SELECT anomaly_id, service, name, explanation FROM anomalies FINAL WHERE run = 'live' AND kind = 'deviation' "
            "AND ts >= fromUnixTimestamp64Milli({s:Int64}) ORDER BY ts, anomaly_id",
            parameters={"s": since_ms - 60_000},
        ).result_rows
        new = [r for r in rows if r[0] not in seen]
        seen.update(r[0] for r in new)
        return new

    def _summary(self, client: Any, v: Verdict) -> DemoSummary:
        from forewarn.flows.store import ms_of

        s, start = self.bed.s, self.bed.start
        detections = []
        for r in v.rows:
            d = Detection(r.event)
            right = [a for a in r.alerts if a.service == r.event.service]
            if right:
                d.first_alert_s = round(right[0].first_s - r.onset_s, 1)
            row = client.query(
                "SELECT min(detected_at) FROM anomalies FINAL WHERE run = 'live' AND kind = 'deviation' AND service = {s:String} "
                "AND ts >= fromUnixTimestamp64Milli({a:Int64}) AND ts <= fromUnixTimestamp64Milli({b:Int64}) HAVING count() > 0",
                parameters={
                    "s": r.event.service,
                    "a": int((start + s.wall(r.onset_s) - self.settings.flows.step_s) * 1000),
                    "b": int((start + s.wall(r.event.end_s + s.notify_within_s)) * 1000),
                },
            ).result_rows
            if row:
                d.first_anomaly_s = round(
                    max(0.0, (ms_of(row[0][0]) / 1000 - start) / s.scale - r.onset_s), 1
                )
            detections.append(d)
        anomalies = client.query("SELECT count() FROM anomalies FINAL WHERE run = 'live'").result_rows[0][0]
        spans = client.query("SELECT count() FROM otel_traces").result_rows[0][0]
        alerts = {a.key for r in v.rows for a in r.alerts} | {f.alert.key for f in v.false_pages}
        return DemoSummary(
            injected=len(v.rows),
            detected=sum(d.detected for d in detections),
            detections=detections,
            false_alerts=[f.alert.labels for f in v.false_pages],
            alerts=len(alerts),
            anomalies=int(anomalies),
            remediations=len(self.receiver.hook_calls),
            spans_sent=int(spans),
            verdict=v,
        )


def print_summary(summary: DemoSummary, out: Callable[[str], None] = print) -> None:
    out("")
    out("summary")
    out(f"  faults injected  : {summary.injected}")
    out(f"  faults paged for the right service: {summary.detected}")
    for d in summary.detections:
        ttd = f"{d.first_alert_s:.0f}s to page" if d.first_alert_s is not None else "NOT PAGED"
        first = f", first anomaly after {d.first_anomaly_s:.0f}s" if d.first_anomaly_s is not None else ""
        out(f"    {d.injection.kind:16} on {d.injection.service:9}: {ttd}{first}")
    out(f"  false pages      : {len(summary.false_alerts)}")
    for labels in summary.false_alerts[:5]:
        out(f"    {labels}")
    out(
        f"  alerts / anomalies / remediations: {summary.alerts} / {summary.anomalies} / {summary.remediations}"
    )
    out(f"  spans stored from the services' OpenTelemetry instrumentation: {summary.spans_sent}")
    if summary.verdict is not None:
        out("")
        out(summary.verdict.table())
