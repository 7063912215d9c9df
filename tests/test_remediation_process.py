"""``forewarn alerts`` as a process, killed with SIGKILL while a hook call is being retried:
the restarted router resumes the same action with the same idempotency key, succeeds once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from forewarn.alerts.testing import wait_ready
from test_remediation_support import SECRET, Receiver

from forewarn.net import free_port

CONFIG = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs: [{{url: "{notify}/notify"}}]
remediations:
  allowlist: ["{url}/"]
  secret_env: FOREWARN_TEST_HOOK_KEY
  hooks:
    - name: restart
      matchers: ['alertname="HighLatency"']
      url: {url}/restart
      retries: 8
      backoff: {{initial: 1500ms, max: 1500ms}}
"""


def _start(config: Path, data: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "FOREWARN_TEST_HOOK_KEY": SECRET}
    cmd = [sys.executable, "-m", "forewarn.cli", "alerts", "--config", str(config)]
    p = subprocess.Popen(
        [*cmd, "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=60)
    except TimeoutError:
        p.kill()
        raise AssertionError(p.stderr.read() if p.stderr else "router not ready") from None
    return p


def _wait(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigkill_mid_retry_resumes_with_the_same_key(tmp_path: Path) -> None:
    hooks, notify = Receiver(script=[503, 503, 503], default=200), Receiver()
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=hooks.url, notify=notify.url))
    data, port = tmp_path / "data", free_port()
    p = _start(config, data, port)
    try:
        alert = {"labels": {"alertname": "HighLatency", "service": "checkout"}}
        assert httpx.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert]).status_code == 200
        _wait(lambda: hooks.count(path="/restart") == 1)  # first attempt failed, a retry is due
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        p = _start(config, data, port)  # the alert is not re-posted: the action itself resumes
        _wait(lambda: hooks.count(200) == 1, timeout=60)
        url = f"http://127.0.0.1:{port}/api/forewarn/v1/remediations"
        _wait(lambda: httpx.get(url).json()[0]["state"] == "succeeded")
        [action] = httpx.get(url).json()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        hooks.close()
        notify.close()
    reqs = [r for r in hooks.requests if r.path == "/restart"]
    assert [r.status for r in reqs] == [503, 503, 503, 200]
    assert {r.headers["Idempotency-Key"] for r in reqs} == {action["idempotencyKey"]}
    attempts = [int(r.headers["X-Forewarn-Attempt"]) for r in reqs]
    # numbering goes on across the crash (a number can be skipped if the kill hit mid-send)
    assert attempts == sorted(set(attempts)) and attempts[0] == 1 and attempts[-1] == action["attempts"]
