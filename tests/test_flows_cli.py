"""The flows CLI in subprocesses on their own data directory (chDB: one store per process):
``forewarn flows score`` killed with SIGKILL and restarted scores every point exactly once, a
``forewarn backtest`` reproduces the live anomalies, and ``forewarn anomaly list|mark`` work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from flows_data import T0_MS

FOREWARN = str(Path(sys.executable).parent / "forewarn")
TESTS = Path(__file__).parent
BUCKETS, INCIDENT = 60, 40


def run(*args: str, data: Path, timeout: float = 300) -> str:
    p = subprocess.run([FOREWARN, *args], capture_output=True, text=True, timeout=timeout, env=_env(data))
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def _env(data: Path) -> dict[str, str]:
    return {**os.environ, "FOREWARN_DATA_DIR": str(data), "FOREWARN_LOG_LEVEL": "WARNING"}


def query(sql: str, data: Path) -> list[dict]:
    return [
        json.loads(line) for line in run("query", "--format", "json", sql, data=data).splitlines() if line
    ]


def test_killed_score_resumes_exactly_once_and_backtest_matches(tmp_path: Path):
    data = tmp_path / "data"
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from forewarn.config import load_settings\nfrom forewarn.storage import open_storage\n"
        "from flows_data import scenario\n"
        f"s = load_settings(overrides={{'data_dir': {str(data)!r}}})\n"
        f"scenario(open_storage(s), s.storage.database, {T0_MS}, {BUCKETS}, {INCIDENT})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=_env(data))
    start, end = str(T0_MS // 1000), str(T0_MS // 1000 + BUCKETS * 10)
    score = [
        FOREWARN,
        "flows",
        "score",
        "--inline",
        "--start",
        start,
        "--until",
        end,
        "--max-batch-buckets",
        "1",
    ]
    for kill_after in (4, 13):  # SIGKILL at arbitrary points of the run, then restart
        proc = subprocess.Popen(
            score, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(data)
        )
        for seen, _line in enumerate(proc.stdout, 1):
            if seen >= kill_after:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    run(*score[1:], data=data)
    wm = query(
        "SELECT toUnixTimestamp64Milli(argMax(watermark, committed_at)) AS w FROM forewarn_flow_state", data
    )
    assert wm[0]["w"] == T0_MS + BUCKETS * 10_000

    dup = query(
        "SELECT (SELECT count() FROM forewarn_signals FINAL) AS final, "
        "(SELECT uniqExact(series_id, ts) FROM forewarn_signals) AS distinct_points, "
        "(SELECT count() FROM anomalies FINAL WHERE run = 'live') AS anomalies, "
        "(SELECT uniqExact(anomaly_id) FROM anomalies WHERE run = 'live') AS anomaly_ids, "
        "(SELECT count() FROM forewarn_signals) AS raw_points, "
        "(SELECT count() FROM anomalies WHERE run = 'live') AS raw_anomalies",
        data,
    )[0]
    assert dup["final"] == dup["distinct_points"] and dup["anomalies"] == dup["anomaly_ids"] > 0
    # the interrupted batches were replayed over the same windows: their inserts were deduplicated
    assert dup["raw_points"] == dup["final"] and dup["raw_anomalies"] == dup["anomalies"]

    report = json.loads(run("backtest", "--inline", "--start", start, "--end", end, "--run", "bt", data=data))
    assert report["incidents"] == 1 and report["pages"] >= 1
    diff = query(
        "SELECT count() AS n FROM (SELECT anomaly_id FROM anomalies FINAL WHERE run = 'live' "
        "EXCEPT SELECT anomaly_id FROM anomalies FINAL WHERE run = 'bt') ",
        data,
    )
    assert diff[0]["n"] == 0
    assert (
        report["anomalies"]
        == query("SELECT count() AS n FROM anomalies FINAL WHERE run = 'live' AND kind = 'deviation'", data)[
            0
        ]["n"]
    )

    listed = [json.loads(x) for x in run("anomaly", "list", "--limit", "5", data=data).splitlines()]
    assert len(listed) == 5 and all(a["kind"] in ("deviation", "forecast") for a in listed)
    marked = json.loads(
        run("anomaly", "mark", listed[0]["id"], "--false-positive", "--note", "load test", data=data)
    )
    assert marked["label"] == "false_positive"
    fb = query("SELECT toString(anomaly_id) AS id, label, note FROM forewarn_feedback", data)
    assert fb == [{"id": listed[0]["id"], "label": "false_positive", "note": "load test"}]
    report2 = json.loads(
        run("backtest", "--inline", "--start", start, "--end", end, "--run", "bt2", data=data)
    )
    assert report2["marked_false_positive"] >= 1

    bad = subprocess.run([FOREWARN, "anomaly", "mark", "123", "--false-positive"], capture_output=True, text=True,
                         env=_env(data), timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "no anomaly 123" in bad.stderr
