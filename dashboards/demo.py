"""``forewarn demo``: the whole product in a few minutes, on nothing but this machine.

It starts forewarn embedded (collector, alert router with a remediation hook, score flow: the
same :class:`forewarn.up.Up` as ``forewarn up``), plus a local "pager" and "remediation endpoint"
that record what forewarn sends them. The synthetic shop (:mod:`forewarn.dashboards.workload`) is
sent through the OpenTelemetry SDK's OTLP/gRPC exporters, in two phases:

* history: the last ``history_s`` of traffic with its own timestamps, so the detectors have
  learnt "normal" before anything happens (spans and logs through the SDK's tracer and logger
  with explicit times; metric points through the SDK's metric exporter, whose data model
  carries explicit times);
* live: real-time traffic with a daily shape compressed into ``day_s``, incidents injected on a
  schedule.

A timeline is printed as things happen (progress, detections, alerts, remediations) and a summary
at the end: incidents injected and detected, time to detect, false alerts. An alert counts for an
incident when the incident's service is among the alert's services and it fires between the
injection and ``grace_s`` after its end; any other alert is false.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forewarn.dashboards.workload import SERVICES, Call, Incident, Kind, Workload

from forewarn.config import Settings

SECRET_ENV = "FOREWARN_DEMO_HOOK_SECRET"


@dataclass(frozen=True)
class Injection:
    kind: Kind
    service: str
    at_s: float  # seconds after the live phase starts
    duration_s: float


@dataclass
class DemoPlan:
    history_s: float = 30 * 60
    live_s: float = 6 * 60
    rate: float = 10.0
    day_s: float = 20 * 60
    step_s: float = 10.0
    warmup_points: int = 120
    grace_s: float = 60.0
    seed: int = 7
    injections: list[Injection] = field(
        default_factory=lambda: [
            Injection("latency", "payments", 60, 60),
            Injection("errors", "checkout", 180, 50),
            Injection("new_log", "db", 290, 40),
        ]
    )

    @classmethod
    def short(cls) -> DemoPlan:
        """The CI form (about 4 minutes): shorter history and live phase, two incidents."""
        return cls(
            history_s=12 * 60,
            live_s=140,
            rate=5.0,
            warmup_points=50,
            grace_s=40,
            injections=[Injection("latency", "payments", 20, 40), Injection("errors", "checkout", 100, 35)],
        )


@dataclass
class Detection:
    injection: Injection
    first_anomaly_s: float | None = None  # after injection
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
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: pager
    webhook_configs:
      - url: {receiver_url}/pager
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


# Large SDK queues: the history phase creates spans much faster than real time, and the SDK drops
# what overflows its queue; force_flush between chunks keeps the queue (and memory) bounded.
_BATCHING = {"max_queue_size": 65536, "max_export_batch_size": 2048, "schedule_delay_millis": 500}


class SdkEmitter:
    """The shop's telemetry through the OpenTelemetry SDK: one tracer, logger and metric exporter
    per service (the service is a resource attribute), OTLP/gRPC to the collector."""

    def __init__(self, endpoint: str, environment: str):
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.resources = {
            s: Resource.create({"service.name": s, "deployment.environment": environment}) for s in SERVICES
        }
        self.tracer_providers, self.logger_providers, self.tracers, self.loggers = {}, {}, {}, {}
        for s, res in self.resources.items():
            tp = TracerProvider(resource=res)
            tp.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True), **_BATCHING)
            )
            lp = LoggerProvider(resource=res)
            lp.add_log_record_processor(
                BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True), **_BATCHING)
            )
            self.tracer_providers[s], self.logger_providers[s] = tp, lp
            self.tracers[s], self.loggers[s] = (
                tp.get_tracer("forewarn.demo", "1"),
                lp.get_logger("forewarn.demo", "1"),
            )
        self.metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
        self.spans = 0
        self._counter_start = time.time_ns()
        self._requests = dict.fromkeys(SERVICES, 0)

    def emit(self, call: Call, parent: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.trace import SpanKind, Status, StatusCode

        span = self.tracers[call.service].start_span(
            call.op,
            context=parent,
            kind=SpanKind.SERVER,
            start_time=call.start_ns,
            attributes={"http.route": call.op},
        )
        ctx = trace.set_span_in_context(span)
        for child in call.children:
            self.emit(child, ctx)
        span.set_status(Status(StatusCode.ERROR if call.failed else StatusCode.OK))
        self.loggers[call.service].emit(
            timestamp=call.end_ns,
            observed_timestamp=call.end_ns,
            context=ctx,
            severity_number=SeverityNumber(call.severity),
            severity_text="ERROR" if call.severity >= 17 else "INFO",
            body=call.log,
        )
        span.end(end_time=call.end_ns)
        self._requests[call.service] += 1
        self.spans += 1

    def emit_metrics(self, t_ns: int, cpu: Callable[[str], float]) -> None:
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Gauge,
            Metric,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        scope = InstrumentationScope("forewarn.demo", "1")
        rms = []
        for s, res in self.resources.items():
            metrics = [
                Metric("process.cpu.utilization", None, "1", Gauge([NumberDataPoint({}, 0, t_ns, cpu(s))])),
                Metric(
                    "app.requests", None, "{request}",
                    Sum([NumberDataPoint({}, self._counter_start, t_ns, self._requests[s])], AggregationTemporality.CUMULATIVE, True),
                ),
            ]  # fmt: skip
            rms.append(ResourceMetrics(res, [ScopeMetrics(scope, metrics, "")], ""))
        self.metric_exporter.export(MetricsData(rms))

    def flush(self) -> None:
        for p in [*self.tracer_providers.values(), *self.logger_providers.values()]:
            p.force_flush(30_000)

    def shutdown(self) -> None:
        for p in [*self.tracer_providers.values(), *self.logger_providers.values()]:
            p.shutdown()
        self.metric_exporter.shutdown()


def _settings(base: Settings, data_dir: Path, plan: DemoPlan) -> Settings:
    from forewarn.config import load_settings

    return load_settings(
        overrides={
            "data_dir": str(data_dir),
            "log_level": "WARNING",
            "storage": {"dsn": f"chdb://{(data_dir / 'chdb').resolve()}", "database": base.storage.database},
            "collector": {"host": "127.0.0.1", "grpc_port": 0, "http_port": 0},
            "alerts": {"listen": "127.0.0.1:0"},
            "flows": {
                "orchestrator": "inline",
                "interval_s": 2.0,
                "step_s": plan.step_s,
                "lateness_s": 3.0,
                "start_lookback_s": plan.history_s + 60,
                "warmup_points": plan.warmup_points,
                # incidents minutes apart must not merge: correlate and resolve on the demo's scale
                "correlation_window_s": 30.0,
                "resolve_after_s": 30.0,
                # The day is compressed into day_s, so is the horizon of saturation forecasts.
                "forecast_horizon_s": max(60.0, 6 * 3600 * plan.day_s / 86400),
            },
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
        self._t0 = time.time()

    def say(self, kind: str, text: str) -> None:
        self.out(f"[{time.time() - self._t0:6.1f}s] {kind:<11} {text}")

    def run(self) -> DemoSummary:
        from forewarn.up import Up

        _plan, s = self.plan, self.settings
        os.environ.setdefault(SECRET_ENV, secrets.token_hex(16))
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.receiver.start()
        cfg = s.data_dir / "demo-alertmanager.yml"
        cfg.write_text(alerts_config(self.receiver.url))
        # The score flow starts after the history is stored: it processes event time as it
        # closes, so history arriving after its watermark passed would never be scored.
        up = Up(s, alerts_config=cfg, alerts_listen="127.0.0.1:0", flows=False)
        loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(target=loop.run_forever, name="forewarn-demo-up", daemon=True)
        loop_thread.start()
        emitter = None
        try:
            asyncio.run_coroutine_threadsafe(up.start(), loop).result(120)
            self.say(
                "start",
                f"forewarn up: OTLP gRPC 127.0.0.1:{up.collector.grpc_port}, router :{up.router.port}, store {s.data_dir}",
            )
            emitter = SdkEmitter(f"127.0.0.1:{up.collector.grpc_port}", "demo")

            def start_flows() -> None:
                from forewarn.flows.service import FlowsService

                up.flows = FlowsService(s, up.dsn, f"http://127.0.0.1:{up.router.port}")
                asyncio.run_coroutine_threadsafe(up.flows.start(), loop).result(60)

            return self._drive(emitter, start_flows)
        finally:
            if emitter is not None:
                emitter.shutdown()
            asyncio.run_coroutine_threadsafe(up.stop(), loop).result(180)
            loop.call_soon_threadsafe(loop.stop)
            loop_thread.join(10)
            self.receiver.stop()

    def _drive(self, emitter: SdkEmitter, start_flows: Callable[[], None]) -> DemoSummary:
        from forewarn.storage import connect

        plan = self.plan
        w = Workload(seed=plan.seed, rate=plan.rate, day_s=plan.day_s, base_error=0.0)
        # -- history: past traffic with its own timestamps, then catch up to the present --------
        chunk = int(plan.step_s * 1000)
        t = int((time.time() - plan.history_s) * 1000) // chunk * chunk
        self.say(
            "history", f"sending {plan.history_s / 60:.0f} min of past traffic through the OpenTelemetry SDK"
        )
        while t + chunk <= time.time() * 1000:
            for c in w.calls(t, chunk):
                emitter.emit(c)
            emitter.emit_metrics((t + chunk) * 1_000_000, lambda svc, t=t: w.cpu(svc, t + chunk))
            t += chunk
            if t // chunk % 30 == 0:
                emitter.flush()
        emitter.flush()  # the collector acknowledged every batch: the history is stored
        start_flows()
        live_start = t / 1000.0
        w.incidents.extend(
            Incident(i.kind, i.service, int((live_start + i.at_s) * 1000), int(i.duration_s * 1000))
            for i in plan.injections
        )
        self.say(
            "history",
            f"{emitter.spans} spans stored; score flow started; live traffic, incidents on schedule",
        )
        client = connect(self.settings.storage_dsn, database=self.settings.storage.database)
        seen_anoms: set[int] = set()
        n_notes = n_hooks = 0
        announced: set[int] = set()
        said: dict[tuple[str, str], float] = {}
        next_metrics = time.time()
        last = t
        end = live_start + plan.live_s + plan.grace_s
        while time.time() < end:
            now = time.time()
            now_ms = int(now * 1000)
            # Traffic goes on through the grace period: only the incidents stop. A workload that
            # fell silent at the end would itself be an outage, rightly detected.
            if now_ms > last:
                for c in w.calls(last, now_ms - last):
                    emitter.emit(c)
                last = now_ms
                if now >= next_metrics:
                    emitter.emit_metrics(now_ms * 1_000_000, lambda svc, t=now_ms: w.cpu(svc, t))
                    next_metrics = now + 5
            for k, inj in enumerate(plan.injections):
                if k not in announced and now >= live_start + inj.at_s:
                    announced.add(k)
                    self.say("INJECT", f"{inj.kind} on {inj.service} for {inj.duration_s:.0f}s")
            for _aid, svc, name, expl in self._new_anomalies(client, seen_anoms, int(live_start * 1000)):
                if now - said.get((svc, name), 0) > 60:  # one line per signal a minute keeps it readable
                    said[(svc, name)] = now
                    self.say("detect", expl[:120])
            for _at, note in self.receiver.notifications[n_notes:]:
                for a in note.get("alerts", []):
                    lab = a.get("labels", {})
                    self.say(
                        "ALERT",
                        f"{a.get('status')} {lab.get('alertname')} service={lab.get('service')} ({a.get('annotations', {}).get('services', '')})",
                    )
            n_notes = len(self.receiver.notifications)
            for _at, call in self.receiver.hook_calls[n_hooks:]:
                labels = (call.get("alert") or {}).get("labels") or {}
                self.say(
                    "REMEDIATE",
                    f"{call.get('hook')} called ({call.get('kind')}) for service={labels.get('service')}",
                )
            n_hooks = len(self.receiver.hook_calls)
            if int(now) % 15 == 0:
                phase = "live" if now < live_start + plan.live_s else "grace"
                self.say(
                    "progress",
                    f"{phase}: {emitter.spans} spans sent, {len(seen_anoms)} anomalies, {n_notes} notifications",
                )
            time.sleep(max(0.0, 1.0 - (time.time() - now)))
        emitter.flush()
        summary = self._summary(client, live_start, emitter.spans)
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

    def _summary(self, client: Any, live_start: float, spans: int) -> DemoSummary:
        plan = self.plan
        firing = []  # (receipt time, alert) of every firing alert notified
        for at, note in self.receiver.notifications:
            for a in note.get("alerts", []):
                if a.get("status") == "firing":
                    firing.append((at, a))
        detections, matched = [], set()
        for inj in plan.injections:
            start, stop = live_start + inj.at_s, live_start + inj.at_s + inj.duration_s + plan.grace_s
            d = Detection(inj)
            for i, (at, a) in enumerate(firing):
                services = set(filter(None, a.get("annotations", {}).get("services", "").split(","))) | {
                    a.get("labels", {}).get("service")
                }
                if inj.service in services and start - plan.step_s <= at <= stop:
                    matched.add(i)
                    d.first_alert_s = min(d.first_alert_s or 1e9, at - start)
            row = client.query(
                "SELECT min(detected_at) FROM anomalies FINAL WHERE run = 'live' AND kind = 'deviation' AND service = {s:String} "
                "AND ts >= fromUnixTimestamp64Milli({a:Int64}) AND ts <= fromUnixTimestamp64Milli({b:Int64}) HAVING count() > 0",
                # bucket timestamps are bucket starts: the bucket holding the injection starts before it
                parameters={"s": inj.service, "a": int((start - plan.step_s) * 1000), "b": int(stop * 1000)},
            ).result_rows
            if row:
                from forewarn.flows.store import ms_of

                d.first_anomaly_s = max(0.0, ms_of(row[0][0]) / 1000 - start)
            detections.append(d)
        false = [a for i, (_, a) in enumerate(firing) if i not in matched]
        anomalies = client.query("SELECT count() FROM anomalies FINAL WHERE run = 'live'").result_rows[0][0]
        fingerprints = {
            a.get("fingerprint") or json.dumps(a.get("labels"), sort_keys=True) for _, a in firing
        }
        return DemoSummary(
            injected=len(plan.injections),
            detected=sum(d.detected for d in detections),
            detections=detections,
            false_alerts=false,
            alerts=len(fingerprints),
            anomalies=int(anomalies),
            remediations=len(self.receiver.hook_calls),
            spans_sent=spans,
        )


def print_summary(summary: DemoSummary, out: Callable[[str], None] = print) -> None:
    out("")
    out("summary")
    out(f"  incidents injected : {summary.injected}")
    out(f"  incidents detected : {summary.detected}")
    for d in summary.detections:
        ttd = f"{d.first_alert_s:.0f}s to alert" if d.first_alert_s is not None else "NOT DETECTED"
        first = f", first anomaly after {d.first_anomaly_s:.0f}s" if d.first_anomaly_s is not None else ""
        out(f"    {d.injection.kind:8} on {d.injection.service:9}: {ttd}{first}")
    out(f"  false alerts       : {len(summary.false_alerts)}")
    for a in summary.false_alerts[:5]:
        out(f"    {a.get('labels')} ({a.get('annotations', {}).get('summary', '')[:100]})")
    out(
        f"  alerts / anomalies / remediations: {summary.alerts} / {summary.anomalies} / {summary.remediations}"
    )
    out(f"  spans sent through the OpenTelemetry SDK: {summary.spans_sent}")
