"""``forewarn demo --short``, the CI form of the demo, in its own process (it hosts its own embedded
store): real collector, router, remediation hook and score flow, telemetry sent through the
OpenTelemetry SDK. Every injected incident must page, nothing else may."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_short_detects_every_incident_without_false_alerts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "forewarn.cli",
            "demo",
            "--short",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "FOREWARN_CONFIG": ""},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["incidents_injected"] == 2, out
    assert summary["incidents_detected"] == summary["incidents_injected"], out
    assert summary["false_alerts"] == 0, out
    assert all(v is not None for v in summary["time_to_detect_s"].values()), out
    assert summary["remediations"] >= 1 and summary["spans_sent"] > 5000, out
    # The timeline shows each phase as it happens.
    for marker in ("history", "INJECT", "detect", "ALERT", "REMEDIATE", "summary"):
        assert marker in out, marker
