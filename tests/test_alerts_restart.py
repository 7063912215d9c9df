"""``forewarn alerts`` as a process: state in --data-dir survives restarts (no re-page, no lost
resolve), a busy port or bad config is a clear error, ``forewarn silence`` talks to it."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from forewarn.alerts.testing import WebhookSink, wait_ready

from forewarn.net import free_port

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
                "alerts",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data),
                "--resend-grace",
                "1",  # nobody re-sends here: restored groups flush after 1 s
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
        time.sleep(2.5)  # the restored group flushes after the 1 s grace: the log says "already sent"
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


def test_restart_matches_alertmanager(tmp_path: Path) -> None:
    """Restart both with their state directories and re-send the alerts as Prometheus would:
    nothing is re-paged, the groups are re-created by the re-sent alerts with Alertmanager's
    timers (a flush at once for old alerts, then every group_interval from there), repeats
    follow the notification log, and later changes are notified alike."""
    from forewarn.alerts.difftest import diff_notifications, iso
    from forewarn.alerts.testing import Alertmanager, RouterProcess

    config = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 3s
  repeat_interval: 1h
  routes:
    - matchers: [alertname=R]
      repeat_interval: 7s500ms
receivers:
  - name: hook
    webhook_configs: [{url: "SINK/hook"}, {url: "SINK/quiet", send_resolved: false}]
"""
    t0 = time.time()

    def alert(name: str, i: int, end: float | None = None) -> dict[str, object]:
        return {
            "labels": {"alertname": name, "i": str(i)},
            "startsAt": iso(t0),
            "endsAt": iso(end or t0 + 600),
        }

    def both(at: float, *alerts: dict[str, object]) -> None:
        """Post to both at once (one after the other, a slow first answer delays the second)."""
        time.sleep(max(0.0, at - time.time()))

        def post(url: str) -> None:
            httpx.post(url + "/api/v2/alerts", json=list(alerts), trust_env=False).raise_for_status()

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(post, (am.url, fw.url)))

    with WebhookSink() as am_sink, WebhookSink() as fw_sink:
        am_cfg, fw_cfg = config.replace("SINK", am_sink.url), config.replace("SINK", fw_sink.url)
        with (
            Alertmanager(am_cfg, data_dir=tmp_path / "am") as am,
            RouterProcess(fw_cfg, data_dir=tmp_path / "fw") as fw,
        ):
            t0 = time.time()  # the alerts start now: their groups wait group_wait
            firing = [alert("A", 1), alert("A", 2), alert("B", 1), alert("R", 1)]
            both(t0, *firing)
            time.sleep(max(0.0, t0 + 1.8 - time.time()))  # notified at +1 s, logged
            # ... and, on a loaded machine, not stopped before both have sent all six.
            _wait(lambda: len(am_sink.received()) >= 6 and len(fw_sink.received()) >= 6, timeout=20)
            time.sleep(0.3)  # the notification log is written right after the receiver answers
        assert not diff_notifications(am_sink.received(), fw_sink.received(), t0)
        n = len(am_sink.received())
        assert n == 6, [r.path for r in am_sink.received()]
        # R's notification, logged just after: its repeat interval (7.5 s, not a multiple of the
        # 3 s group interval) runs from here.
        tn = max(r.t for s in (am_sink, fw_sink) for r in s.received() if '"R"' in r.body["groupKey"])
        with (
            Alertmanager(am_cfg, data_dir=tmp_path / "am") as am,
            RouterProcess(fw_cfg, data_dir=tmp_path / "fw") as fw,
        ):
            # The same alerts again at t1, however long the restart took: t1 is a whole multiple
            # of 3 s after tn, so R's groups, re-created at t1 and flushed at once then every 3 s,
            # decide its repeat 1.5 s away from the 7.5 s (3 s after tn: at t1 + 6; 6 s after:
            # at t1 + 3; 9 s or more: at once). The A and B groups send nothing at t1 (already
            # notified), then report the changes posted at t1 + 1 and t1 + 3.5.
            t1 = tn + 3 * math.ceil((time.time() + 0.5 - tn) / 3)
            r_at = max(0, round(9 - (t1 - tn)))
            both(t1, *firing)
            both(t1 + 1.0, alert("A", 2, time.time()), alert("A", 3))  # reported at t1 + 3 s
            both(t1 + 3.5, alert("B", 2))  # reported at t1 + 6 s
            # The six of the window from both, read before they stop (stopping takes seconds on a
            # loaded machine, and the one still running would send R's next repeat at t1 + 9);
            # a delivery a loaded machine made late still counts, R's repeat does not.
            _wait(lambda: len(am_sink.received()) >= n + 6 and len(fw_sink.received()) >= n + 6, 30)
            after_am = [r for r in am_sink.received()[n:] if r.t < t1 + 8.5]
            after_fw = [r for r in fw_sink.received()[n:] if r.t < t1 + 8.5]
        diffs = diff_notifications(after_am, after_fw, t1)
        assert not diffs, "\n".join(diffs)
        got = sorted((r.path, r.body["groupKey"], r.t - t1) for r in after_am)
        want = sorted(
            [
                ("/hook", '{}/{alertname="R"}:{alertname="R"}', r_at),
                ("/hook", '{}:{alertname="A"}', 3),
                ("/quiet", '{}/{alertname="R"}:{alertname="R"}', r_at),
                ("/quiet", '{}:{alertname="A"}', 3),
                ("/hook", '{}:{alertname="B"}', 6),
                ("/quiet", '{}:{alertname="B"}', 6),
            ]
        )
        # each at its second, within a second (the due times are 3 s apart)
        assert len(got) == len(want) and all(
            g[:2] == w[:2] and abs(g[2] - w[2]) <= 1.0 for g, w in zip(got, want, strict=True)
        ), (t1 - tn, got)
