"""``forewarn alerts`` as a process: state in --data-dir survives restarts (no re-page, no lost
resolve), a busy port or bad config is a clear error, ``forewarn silence`` talks to it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from forewarn.alerts.testing import WebhookSink, free_port, wait_ready

CONFIG = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs: [{url: "SINK/hook"}]
"""


def _forewarn(*args: str) -> list[str]:
    return [sys.executable, "-m", "forewarn.cli", *args]


class Proc:
    def __init__(self, config: Path, data: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "FOREWARN_DATA_DIR": str(data.parent)}
        self.p = subprocess.Popen(
            _forewarn(
                "alerts", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_ready(self.url, timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.p.send_signal(sig)
        self.p.wait(30)


def _logged(data: Path) -> int:
    with sqlite3.connect(data / "alerts-state.sqlite") as db:
        return db.execute("SELECT count(*) FROM nflog").fetchone()[0]


def _wait(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        time.sleep(0.05)


def test_restart_neither_repages_nor_forgets_to_resolve(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        cfg = tmp_path / "am.yml"
        cfg.write_text(CONFIG.replace("SINK", sink.url))
        data, port = tmp_path / "alerts", free_port()
        alert = {"labels": {"alertname": "Disk", "host": "h1"}, "startsAt": "2026-01-01T00:00:00Z"}

        p = Proc(cfg, data, port)
        httpx.post(p.url + "/api/v2/alerts", json=[alert]).raise_for_status()
        _wait(lambda: len(sink.received()) == 1)
        assert len(sink.received()) == 1
        # Sent, then logged: a kill between the two would re-send once (at-least-once, as Alertmanager).
        _wait(lambda: _logged(data) == 1)
        p.stop(signal.SIGKILL)  # no clean shutdown at all

        p = Proc(cfg, data, port)
        time.sleep(2.5)  # the restored group flushes at once, then every second: the log says "already sent"
        assert len(sink.received()) == 1, [r.body["status"] for r in sink.received()]
        # Resolve, then stop before the group's next flush can report it.
        resolved = {**alert, "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        httpx.post(p.url + "/api/v2/alerts", json=[resolved]).raise_for_status()
        p.stop(signal.SIGKILL)
        n = len(sink.received())

        p = Proc(cfg, data, port)
        _wait(lambda: len(sink.received()) == 2)
        bodies = [r.body for r in sink.received()]
        assert n <= 2 and len(bodies) == 2 and bodies[-1]["status"] == "resolved"
        time.sleep(1.5)
        assert len(sink.received()) == 2  # reported once
        p.stop()
        assert p.p.returncode == 0, p.p.stderr.read() if p.p.stderr else ""


def test_silence_cli_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "am.yml"
    cfg.write_text(CONFIG.replace("SINK", "http://127.0.0.1:1"))
    port = free_port()
    p = Proc(cfg, tmp_path / "alerts", port)
    try:
        run = lambda *a: subprocess.run(_forewarn(*a), capture_output=True, text=True, timeout=60)  # noqa: E731
        out = run("silence", "add", "alertname=Disk", 'host=~"h[12]"', "--comment", "maint", "--url", p.url)
        assert out.returncode == 0, out.stderr
        sid = out.stdout.strip()
        listed = run("silence", "list", "--url", p.url)
        assert sid in listed.stdout and 'host=~"h[12]"' in listed.stdout and "active" in listed.stdout
        assert run("silence", "expire", sid, "--url", p.url).returncode == 0
        assert sid not in run("silence", "list", "--url", p.url).stdout
        bad = run("silence", "add", 'x=~".*"', "--url", p.url)
        assert bad.returncode != 0 and "must not match the empty string" in bad.stderr
        # A second router on the same port: a clear error, not a traceback.
        busy = run(
            "alerts", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "b")
        )
        assert busy.returncode != 0 and "cannot listen" in busy.stderr and "Traceback" not in busy.stderr
        cfg2 = tmp_path / "bad.yml"
        cfg2.write_text("route: {receiver: x, whatever: 1}\nreceivers: [{name: x}]")
        badcfg = run(
            "alerts", "--config", str(cfg2), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "c")
        )
        assert badcfg.returncode != 0 and "route.whatever: unsupported key" in badcfg.stderr
    finally:
        p.stop()


def test_restart_keeps_group_cadence(tmp_path: Path) -> None:
    """A restored group flushes on its old cadence (first flush + k * group_interval), not at once."""
    from forewarn.alerts.testing import RouterThread

    config = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 500ms
  group_interval: 4s
receivers:
  - name: hook
    webhook_configs: [{url: "SINK/hook"}]
"""
    with WebhookSink() as sink:
        cfg = config.replace("SINK", sink.url)
        data = tmp_path / "alerts"
        with RouterThread(cfg, data_dir=data) as r:
            t0 = time.time()
            httpx.post(
                r.url + "/api/v2/alerts", json=[{"labels": {"alertname": "C", "i": "1"}}]
            ).raise_for_status()
            _wait(lambda: _logged(data) == 1)
        first = sink.received()[0].t
        with RouterThread(cfg, data_dir=data) as r:
            old = "2026-01-01T00:00:00Z"  # would flush a new group at once
            httpx.post(
                r.url + "/api/v2/alerts", json=[{"labels": {"alertname": "C", "i": "2"}, "startsAt": old}]
            )
            _wait(lambda: len(sink.received()) == 2, timeout=8)
        second = sink.received()[1]
        assert len(second.body["alerts"]) == 2
        assert second.t - first >= 4.0 - 0.3, (first - t0, second.t - t0)
