"""End to end, in real time: OpenTelemetry SDK clients of three services -> OTLP/gRPC collector ->
chDB -> FlowsService (embedded score loop) -> the alert router -> a webhook receiver.

Steady traffic first, then an incident: a latency regression in db's ``SELECT orders`` (which
web's ``GET /checkout`` calls), an error burst in web, a new error log template in db, and the
disk of api filling up. Expected: one grouped incident naming db / SELECT orders, delivered by the
router to the webhook, and the disk forecast before the disk is full. Buckets are 1 s here so the
test takes about a minute; durations counted in buckets (the persistence of a deviation before
models are warm) are scaled with them, and nothing else differs from production settings.
"""

from __future__ import annotations

import time

from collector_support import RunningCollector
from flows_data import Services
from forewarn.alerts.testing import RouterThread, WebhookSink
from forewarn.flows.service import FlowsService

STEADY_S, MAX_WAIT_S = 14.0, 90.0


def test_sdk_incident_becomes_one_routed_incident_and_disk_warns_early(settings, store):
    s = settings.model_copy(deep=True)
    s.flows.step_s, s.flows.lateness_s, s.flows.interval_s = 1.0, 1.5, 0.5
    s.flows.correlation_window_s, s.flows.orchestrator = 20.0, "inline"
    s.flows.persist_s = 2.0  # 2 buckets, as the default 20 s is at 10-s buckets
    with WebhookSink() as sink, RunningCollector(s) as collector:
        config = (
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n"
            f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {sink.url}/hook\n"
        )
        with RouterThread(config) as router:
            flows = FlowsService(s, s.storage_dsn, router.url)
            flows.start_thread()
            svc = Services(f"127.0.0.1:{collector.grpc_port}")
            svc.start_traffic(seed=5, disk_step=0.002)  # disk full about 30 s into the incident
            t0 = time.time()
            try:
                time.sleep(STEADY_S)
                svc.incident = True
                got, disk_at_warning = {}, None
                while time.time() - t0 < STEADY_S + MAX_WAIT_S:
                    for r in sink.received("/hook"):
                        for a in r.body["alerts"]:
                            got.setdefault(a["labels"]["alertname"], a)
                    if disk_at_warning is None and "ForewarnSaturationForecast" in got:
                        disk_at_warning = svc.disk
                    if {"ForewarnIncident", "ForewarnSaturationForecast"} <= set(got):
                        break
                    time.sleep(0.5)
                # what arrived while the services ran (when the test stops them, all of them go
                # silent at once: rightly paged as lost traffic if scored before the flows stop)
                seen = sink.received("/hook")
            finally:
                svc.stop_traffic()
                svc.shutdown()
                flows.stop_thread()
    assert flows.errors == 0, flows.last_error
    incident = got["ForewarnIncident"]
    assert incident["labels"]["service"] == "db", incident
    assert incident["labels"]["operation"] == "SELECT orders", incident
    incidents = {a["labels"]["incident"] for r in seen for a in r.body["alerts"]
                 if a["labels"]["alertname"] == "ForewarnIncident"}  # fmt: skip
    assert len(incidents) == 1, incidents
    disk = got["ForewarnSaturationForecast"]
    assert disk["labels"]["service"] == "api" and "full in" in disk["annotations"]["summary"]
    assert disk_at_warning < 1.0, disk_at_warning  # the warning came before the disk was full
