"""``forewarn up --data-dir DIR --grpc-port P --http-port P --alerts-config FILE`` in a subprocess,
judged only by the webhook notifications it sends: SDK clients of three services send steady
telemetry, then an incident; one incident naming db / SELECT orders and the disk forecast must
arrive. The flows run embedded through Prefect's temporary server, as by default; only the bucket
width is shortened (1 s) through the environment so the test takes about a minute."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flows_data import Services
from forewarn.alerts.testing import WebhookSink, free_port

FOREWARN = str(Path(sys.executable).parent / "forewarn")


def test_forewarn_up_delivers_one_incident_and_the_disk_warning(tmp_path: Path):
    with WebhookSink() as sink:
        cfg = tmp_path / "alertmanager.yml"
        cfg.write_text(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n"
            f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {sink.url}/hook\n"
        )
        grpc_port, http_port = free_port(), free_port()
        env = {**os.environ, "FOREWARN_FLOWS__STEP_S": "1", "FOREWARN_FLOWS__LATENESS_S": "1.5",
               "FOREWARN_FLOWS__INTERVAL_S": "0.5", "FOREWARN_FLOWS__PERSIST_S": "2", "FOREWARN_FLOWS__SUMMARY_INTERVAL_S": "5",
               "FOREWARN_ALERTS__LISTEN": f"127.0.0.1:{free_port()}"}  # fmt: skip
        with open(tmp_path / "up.log", "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [FOREWARN, "up", "--data-dir", str(tmp_path / "data"), "--grpc-port", str(grpc_port),
                 "--http-port", str(http_port), "--alerts-config", str(cfg)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        svc = None
        try:
            deadline = time.time() + 60
            while b"forewarn up:" not in (tmp_path / "up.log").read_bytes():
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "up.log").read_text()[
                    -3000:
                ]
                time.sleep(0.2)
            svc = Services(f"127.0.0.1:{grpc_port}")
            svc.start_traffic(seed=11, disk_step=0.0006)  # disk full about a minute into the incident
            time.sleep(25)  # steady; includes the embedded Prefect server's start
            svc.incident = True
            got: dict[str, dict] = {}
            deadline = time.time() + 120
            while time.time() < deadline and not {"ForewarnIncident", "ForewarnSaturationForecast"} <= set(
                got
            ):
                for r in sink.received("/hook"):
                    for a in r.body["alerts"]:
                        got.setdefault(a["labels"]["alertname"], a)
                time.sleep(0.5)
            disk_at_warning = svc.disk
        finally:
            if svc is not None:
                svc.stop_traffic()
                svc.shutdown()
            proc.terminate()
            proc.wait(60)
    text = (tmp_path / "up.log").read_text()
    assert "ForewarnIncident" in got, text[-3000:]
    assert got["ForewarnIncident"]["labels"]["service"] == "db"
    assert got["ForewarnIncident"]["labels"]["operation"] == "SELECT orders"
    ids = {a["labels"]["incident"] for r in sink.received("/hook") for a in r.body["alerts"]
           if a["labels"]["alertname"] == "ForewarnIncident"}  # fmt: skip
    assert len(ids) == 1
    assert "ForewarnSaturationForecast" in got and disk_at_warning < 1.0
    assert "scoring inline" not in text  # the flows ran through Prefect
    # up says what it is doing: a summary line of the score loop, and no "no receiver" warning here
    assert "flows: " in text and " batches scored " in text and "alerts posted to the router" in text
    assert "alerts go to no receiver" not in text
