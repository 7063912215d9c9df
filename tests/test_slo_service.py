"""The SLO flow inside the running flows service (what ``forewarn up`` runs): the files of
``slo.dir``, a store with an hour of 2 % errors, the real router and a webhook receiving the page."""

from __future__ import annotations

import time

import test_slo_cli
from forewarn.alerts.testing import RouterThread, WebhookSink
from forewarn.flows.service import FlowsService
from test_slo_alerts import stream

SLO_FILE = test_slo_cli.SLO_FILE.replace("service: api\n", "service: api\nslo_period: 7d\n")


def test_the_service_counts_evaluates_and_pages(settings, store, tmp_path):
    d = tmp_path / "slos"
    d.mkdir()
    (d / "api.yaml").write_text(SLO_FILE)
    s = settings.model_copy(deep=True)
    s.slo.dir, s.slo.interval_s = d, 0.5
    s.flows.interval_s, s.flows.orchestrator = 0.5, "inline"
    now = int(time.time()) // 60 * 60_000
    stream(store, s.storage.database, now - 70 * 60_000, 68, lambda i: 40)
    config = (
        "route:\n  receiver: hook\n  group_by: [alertname, sloth_id]\n  group_wait: 0s\n  group_interval: 1s\n"
        "receivers:\n  - name: hook\n    webhook_configs:\n      - url: {u}/hook\n"
    )
    with WebhookSink() as sink, RouterThread(config.format(u=sink.url)) as router:
        flows = FlowsService(s, s.storage_dsn, router.url)
        flows.start_thread()
        try:
            page = None
            deadline = time.monotonic() + 120
            while page is None and time.monotonic() < deadline:
                page = next((a for r in sink.received("/hook") for a in r.body["alerts"]
                             if a["labels"].get("sloth_severity") == "page"), None)  # fmt: skip
                time.sleep(0.2)
        finally:
            flows.stop_thread()
    assert flows.errors == 0, flows.last_error
    assert page is not None, [r.body for r in sink.received()]
    assert (
        page["labels"]["alertname"] == "ApiHighErrorRate" and page["labels"]["sloth_id"] == "api-availability"
    )
    assert page["status"] == "firing"
