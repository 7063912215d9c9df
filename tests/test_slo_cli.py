"""``forewarn slo list|run|status`` in subprocesses on their own data directory (chDB: one store
per process), with the SLO directory from a config file (-c) or --dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

FOREWARN = str(Path(sys.executable).parent / "forewarn")
TESTS = Path(__file__).parent

SLO_FILE = """\
version: "prometheus/v1"
service: api
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_server_request_duration_seconds_count{service="api", code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_server_request_duration_seconds_count{service="api"}[{{.window}}]))
    alerting:
      name: ApiHighErrorRate
"""


def _run(*args: str, data: Path, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "FOREWARN_DATA_DIR": str(data), "FOREWARN_LOG_LEVEL": "WARNING"}
    p = subprocess.run([FOREWARN, *args], capture_output=True, text=True, timeout=300, env=env)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_list_run_status(tmp_path: Path):
    data, slo_dir = tmp_path / "data", tmp_path / "slos"
    slo_dir.mkdir()
    (slo_dir / "api.yaml").write_text(SLO_FILE)
    (tmp_path / "forewarn.yaml").write_text(f"slo:\n  dir: {slo_dir}\n")
    t0 = int(time.time() - 3 * 3600) // 60 * 60_000
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from forewarn.config import load_settings\nfrom forewarn.storage import open_storage\n"
        "from test_slo_alerts import stream\n"
        f"s = load_settings(overrides={{'data_dir': {str(data)!r}}})\n"
        # 2 h at 0.5 % errors (10 of 2000 a minute), then 50 min at 2 %, ending 10 min ago
        f"stream(open_storage(s), s.storage.database, {t0}, 170, lambda i: 10 if i < 120 else 40)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tmp_path,
                   env={**os.environ, "FOREWARN_DATA_DIR": str(data)})  # fmt: skip
    listed = _run("-c", str(tmp_path / "forewarn.yaml"), "slo", "list", data=data).stdout
    assert "api-availability" in listed and "99.9%" in listed and "ApiHighErrorRate" in listed
    (line,) = _run("slo", "list", "--dir", str(slo_dir), "--json", data=data).stdout.splitlines()
    assert json.loads(line)["sli_key"].startswith("api-availability/")

    before = _run("slo", "status", "--dir", str(slo_dir), data=data).stdout
    assert "not counted yet" in before
    ran = json.loads(_run("slo", "run", "--dir", str(slo_dir), data=data).stdout)
    assert ran["slos"] == 1 and ran["runs"] >= 1 and ran["firing"] == {"api-availability": ["page", "ticket"]}

    (st,) = [
        json.loads(x)
        for x in _run("slo", "status", "--dir", str(slo_dir), "--json", data=data).stdout.splitlines()
    ]
    # 120 min x 10 + 50 min x 40 bad of 170 x 2000: 9.4 times the 0.1 % budget
    assert st["total"] == 340_000 and st["good"] == 340_000 - 3200
    assert abs(st["budget_remaining"] - (1 - 3200 / (0.001 * 340_000))) < 1e-9
    # the last hour: 50 min at 40 and 10 min at 10 bad a minute, 1.75 %
    assert abs(st["burn"]["3600"] - 17.5) < 1e-9 and st["firing"] == ["page", "ticket"]
    table = _run("slo", "status", "--dir", str(slo_dir), data=data).stdout
    assert "api-availability" in table and "17.50x" in table and "-841.176%" in table

    (slo_dir / "broken.yaml").write_text(
        "version: prometheus/v1\nservice: web\nslos:\n  - name: x\n    objective: 120\n"
    )
    p = _run("slo", "list", "--dir", str(slo_dir), data=data, ok=False)
    assert p.returncode == 2
    assert f"{slo_dir / 'broken.yaml'}: slos[0].objective: 120 is not between 0 and 100" in p.stderr
    assert "slos[0].sli: is required" in p.stderr
    assert "Traceback" not in p.stderr
