"""``forewarn up`` runs collector, alert router and flows in one process on the embedded store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from forewarn.net import free_port

FOREWARN = [sys.executable, "-m", "forewarn.cli"]


class Webhook:
    """A real HTTP receiver on 127.0.0.1 recording Alertmanager webhook payloads."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                outer.payloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def wait_until(pred, timeout: float = 180.0, step: float = 0.2):  # a liveness bound
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := pred():
                return value
        except Exception:
            pass
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_up_serves_otlp_alerts_and_queries_then_stops_cleanly(tmp_path: Path) -> None:
    hook = Webhook()
    cfg = tmp_path / "am.yml"
    cfg.write_text(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n"
        f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook.url}\n"
    )
    grpc_port, http_port, am_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            *FOREWARN,
            "up",
            "--data-dir",
            str(data),
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--alerts-config",
            str(cfg),
            "--alerts-listen",
            f"127.0.0.1:{am_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FOREWARN_CONFIG": ""},
    )
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{am_port}/-/ready").status_code == 200)

        body = {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]
                    },
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": str(time.time_ns()),
                                    "body": {"stringValue": "hello from up"},
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        r = httpx.post(f"http://127.0.0.1:{http_port}/v1/logs", json=body)
        assert r.status_code == 200, r.text

        out = subprocess.run(
            [
                *FOREWARN,
                "query",
                "--storage",
                f"chdb://{data / 'chdb'}",
                "-f",
                "json",
                "SELECT ServiceName, Body FROM otel_logs",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "FOREWARN_CONFIG": ""},
        )
        assert json.loads(out.stdout) == {"ServiceName": "checkout", "Body": "hello from up"}

        alert = [{"labels": {"alertname": "UpTest", "service": "checkout"}}]
        assert httpx.post(f"http://127.0.0.1:{am_port}/api/v2/alerts", json=alert).status_code == 200
        wait_until(lambda: hook.payloads, timeout=60)
        assert hook.payloads[0]["alerts"][0]["labels"]["alertname"] == "UpTest"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, output
    assert not list(data.glob(".*owner.json")), "the store was not released"
