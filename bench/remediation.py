"""Remediation hot paths: deciding an alert storm, and executing signed calls.

Prints throughput and a ratio against a floor measured in the same run on the same machine,
so a noisy shared host changes both sides alike:

* storm: alerts/s from ``submit`` until every alert is decided (guardrails, idempotency,
  durable state, audit outbox) vs. the floor of bare SQLite inserts of the same alerts with
  one transaction per batch: the cost of everything the engine adds on top of persisting.
* calls: signed, audited hook calls/s to a local receiver (and p50/p99 latency from submit to
  the receiver) vs. the floor of unsigned bare ``httpx`` POSTs to that receiver.

Exits 1 when a ratio falls under its minimum. Usage: ``python bench/remediation.py [--alerts N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from forewarn.alerts.remediation.config import parse_remediations
from forewarn.alerts.remediation.engine import RemediationEngine

MIN_STORM_RATIO = 0.01
MIN_CALLS_RATIO = 0.05


class _Receiver:
    def __init__(self) -> None:
        self.arrivals: list[float] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.arrivals.append(time.perf_counter())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _alerts(n: int, group: int) -> list[dict[str, Any]]:
    return [
        {
            "status": "firing",
            "labels": {"alertname": "Boom", "service": f"svc{group}", "instance": f"i{i}"},
            "annotations": {"summary": "x"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f"{group:08x}{i:08x}",
        }
        for i in range(n)
    ]


def _config(url: str, tmp: Path, cap: int) -> Any:
    (tmp / "key").write_text("bench-secret")
    return parse_remediations(
        {
            "allowlist": [url + "/"],
            "secret_file": str(tmp / "key"),
            "max_executions": cap,
            "max_concurrency": 32,
            "hooks": [
                {"name": "fix", "matchers": ['alertname="Boom"'], "url": url + "/fix", "cooldown": "0s"}
            ],
        }
    )


async def _drain(eng: RemediationEngine) -> None:
    while eng.state.inbox_size() or eng.state.actions_in(("queued",)):
        await asyncio.sleep(0.005)


def storm_floor(n_alerts: int, per_batch: int, tmp: Path) -> float:
    conn = sqlite3.connect(tmp / "floor.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, alert TEXT)")
    t0 = time.perf_counter()
    for g in range(n_alerts // per_batch):
        conn.execute("BEGIN")
        for a in _alerts(per_batch, g):
            conn.execute("INSERT INTO t VALUES (?, ?)", (a["fingerprint"], orjson.dumps(a).decode()))
        conn.execute("COMMIT")
    conn.close()
    return n_alerts / (time.perf_counter() - t0)


async def storm(n_alerts: int, per_batch: int, rcv: _Receiver, tmp: Path) -> float:
    eng = RemediationEngine(_config(rcv.url, tmp, cap=10), tmp / "storm", f"chdb://{tmp / 'chdb'}", "bench")
    await eng.start()
    t0 = time.perf_counter()
    for g in range(n_alerts // per_batch):
        await eng.submit(f"group-{g}", "team", _alerts(per_batch, g))
    await _drain(eng)
    rate = n_alerts / (time.perf_counter() - t0)
    await eng.stop()
    return rate


def calls_floor(n: int, rcv: _Receiver) -> float:
    body = orjson.dumps(_alerts(1, 0)[0])
    with httpx.Client(trust_env=False) as c:
        t0 = time.perf_counter()
        for _ in range(n):
            c.post(rcv.url + "/floor", content=body)
        return n / (time.perf_counter() - t0)


async def calls(n: int, rcv: _Receiver, tmp: Path) -> tuple[float, float, float]:
    eng = RemediationEngine(_config(rcv.url, tmp, cap=n), tmp / "calls", f"chdb://{tmp / 'chdb'}", "bench")
    await eng.start()
    rcv.arrivals.clear()
    t0 = time.perf_counter()
    sent: list[float] = []
    for g in range(n):
        sent.append(time.perf_counter())
        await eng.submit(f"g{g}", "team", _alerts(1, g))
    await _drain(eng)
    rate = n / (time.perf_counter() - t0)
    await eng.stop()
    lat = sorted(a - s for a, s in zip(sorted(rcv.arrivals), sent, strict=False))
    return rate, statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=5000, help="alerts in the storm")
    ap.add_argument("--calls", type=int, default=300, help="hook calls to execute")
    args = ap.parse_args()
    rcv = _Receiver()
    ok = True
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        floor = storm_floor(args.alerts, 100, tmp)
        rate = asyncio.run(storm(args.alerts, 100, rcv, tmp))
        ratio = rate / floor
        ok &= ratio >= MIN_STORM_RATIO
        print(
            f"storm: {rate:,.0f} alerts/s decided ({args.alerts} alerts, cap 10) | "
            f"floor sqlite inserts {floor:,.0f}/s | ratio {ratio:.3f} (min {MIN_STORM_RATIO})"
        )
        floor = calls_floor(args.calls, rcv)
        rate, p50, p99 = asyncio.run(calls(args.calls, rcv, tmp))
        ratio = rate / floor
        ok &= ratio >= MIN_CALLS_RATIO
        print(
            f"calls: {rate:,.0f} signed calls/s, submit->receiver p50 {p50:.1f} ms p99 {p99:.1f} ms | "
            f"floor bare POSTs {floor:,.0f}/s | ratio {ratio:.3f} (min {MIN_CALLS_RATIO})"
        )
    rcv.server.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
