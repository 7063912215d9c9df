"""SLO benchmark: 100 SLOs over 30 days of stored telemetry on the embedded store.

The store holds 30 days of ``http.server.request.duration`` histograms, one delta point a minute
per service and status code (20 services: 1.7 M rows, 2.6 G requests). 100 SLOs (5 per service:
availability over 30 d rolling / 7 d, latency under 0.25 s and 0.5 s, 429s) are defined as
Sloth and OpenSLO selectors. Three figures:

* catch-up: the SLO flow counts every SLI's 30 days into ``forewarn_slo_buckets`` (what a new
  SLO costs once); floor: one scan of the same histogram rows (``count, sum(Count)`` per service);
* evaluation: burn rates over the seven alert windows, the SLI and budget over each SLO's window
  and the budget forecasts, for all 100 SLOs at once from the buckets (what every run costs);
  floor: one plain scan of the 4.3 M bucket rows (``sum(good), sum(total)`` per SLI);
* a live run: one more minute counted for every SLI, then the evaluation (the steady state);
  and for scale, evaluating from the raw telemetry instead: the catch-up time, per evaluation.

    .venv/bin/python bench/slo.py [--days 30] [--services 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from forewarn.flows.slo import SLOEngine, evaluate
from forewarn.flows.slo_spec import SLO, TimeWindow, parse_selector

from forewarn.config import load_settings
from forewarn.storage import open_storage

MIN = 60_000
BOUNDS = [0.1, 0.25, 0.5, 1.0]
METRIC = "http_server_request_duration_seconds"


def populate(client, db: str, services: int, days: int, end_ms: int) -> int:
    rng = np.random.default_rng(0)
    minutes = days * 1440
    start = end_ms - minutes * MIN
    cols = ["ServiceName", "MetricName", "Attributes", "StartTimeUnix", "TimeUnix", "Count", "Sum",
            "BucketCounts", "ExplicitBounds", "AggregationTemporality"]  # fmt: skip
    rows = 0
    for sv in range(services):
        t = start + np.arange(minutes, dtype=np.int64) * MIN
        n = rng.poisson(1000 * (1 + 0.5 * np.sin(2 * np.pi * np.arange(minutes) / 1440)))
        for code, share in (("200", 0.997), ("500", 0.002), ("429", 0.001)):
            c = rng.binomial(n, share)
            split = np.stack([c * 0.5, c * 0.3, c * 0.15, c * 0.04], axis=1).astype(np.int64)
            split = np.concatenate([split, (c - split.sum(axis=1))[:, None]], axis=1)
            data = [
                [f"svc-{sv}"] * minutes,
                ["http.server.request.duration"] * minutes,
                [{"http.response.status_code": code}] * minutes,
                [datetime.fromtimestamp(x / 1000, tz=UTC) for x in t],
                [datetime.fromtimestamp((x + 59_000) / 1000, tz=UTC) for x in t],
                c.tolist(),
                [0.0] * minutes,
                split.tolist(),
                [BOUNDS] * minutes,
                [1] * minutes,
            ]
            client.insert(
                "otel_metrics_histogram", data, column_names=cols, database=db, column_oriented=True
            )
            rows += minutes
    return rows


def slos(services: int) -> list[SLO]:
    out = []
    for sv in range(services):
        svc, sel = f"svc-{sv}", f'service="svc-{sv}"'
        total = parse_selector(f"sum(rate({METRIC}_count{{{sel}}}[{{{{.window}}}}]))")
        out += [
            SLO(svc, "availability", 0.999, total=total, window=TimeWindow(30),
                bad=parse_selector(f'{METRIC}_count{{{sel}, code=~"5.."}}')),
            SLO(svc, "availability-weekly", 0.99, total=total, window=TimeWindow(7),
                bad=parse_selector(f'{METRIC}_count{{{sel}, code=~"5.."}}')),
            SLO(svc, "latency-250ms", 0.9, total=total, window=TimeWindow(28),
                good=parse_selector(f'{METRIC}_bucket{{{sel}, le="0.25"}}')),
            SLO(svc, "latency-500ms", 0.95, total=total, window=TimeWindow(30, rolling=False),
                good=parse_selector(f'{METRIC}_bucket{{{sel}, le="0.5"}}')),
            SLO(svc, "throttled", 0.995, total=total, window=TimeWindow(30),
                bad=parse_selector(f'{METRIC}_count{{{sel}, code="429"}}')),
        ]  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--services", type=int, default=20, help="5 SLOs each")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (median reported)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="forewarn-bench-slo-"))
    try:
        s = load_settings(overrides={"data_dir": str(tmp),
                                     "storage": {"dsn": f"chdb://{tmp / 'chdb'}", "database": "bench"}})  # fmt: skip
        s.slo.max_batch_buckets = args.days * 1440
        client = open_storage(s)
        end = int(time.time() // 60 * MIN) - 10 * MIN
        t = time.perf_counter()
        rows = populate(client, "bench", args.services, args.days, end)
        print(f"store: {rows / 1e6:.2f} M histogram rows, {args.services} services x {args.days} days "
              f"(written in {time.perf_counter() - t:.0f} s)")  # fmt: skip
        defs = slos(args.services)

        def timed(fn) -> float:
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - t0)
            return statistics.median(runs)

        lo = end - args.days * 1440 * MIN
        scan = """SELECT ServiceName, count(), sum(Count) FROM bench.otel_metrics_histogram
                  WHERE TimeUnix >= fromUnixTimestamp64Milli({a:Int64}) AND TimeUnix < fromUnixTimestamp64Milli({b:Int64})
                  GROUP BY ServiceName"""
        floor_raw = timed(lambda: client.query(scan, parameters={"a": lo, "b": end}))
        eng = SLOEngine(client, s, defs, clock=lambda: end / 1000 + 60, forecast=True)
        eng.start_at(lo)
        t0 = time.perf_counter()
        eng.run_until(end)
        catch = time.perf_counter() - t0
        n_buckets = client.query("SELECT count() FROM bench.forewarn_slo_buckets").result_rows[0][0]
        print(f"floor (raw): one scan of the histogram rows {floor_raw * 1000:.0f} ms "
              f"({rows / floor_raw / 1e6:.1f} M rows/s)")  # fmt: skip
        print(f"catch-up: {len(defs)} SLOs x {args.days} days counted in {catch:.1f} s "
              f"({len(defs) * args.days / catch:.1f} SLO-days/s; {n_buckets / 1e6:.2f} M buckets); "
              f"ratio {catch / floor_raw:.0f}x the scan = {catch / floor_raw / len(defs):.2f} scans per SLO")  # fmt: skip

        at = {x.sli_key: end for x in defs}
        floor_sql = "SELECT sli_key, sum(good), sum(total) FROM bench.forewarn_slo_buckets GROUP BY sli_key"
        floor = timed(lambda: client.query(floor_sql))
        ev = timed(lambda: evaluate(eng.store, defs, at, 7 * 86400.0, forecast=False))
        ev_f = timed(lambda: evaluate(eng.store, defs, at, 7 * 86400.0, forecast=True))
        print(f"floor (buckets): one scan of the buckets {floor * 1000:.0f} ms")
        print(f"evaluation of {len(defs)} SLOs: burn rates + windows {ev * 1000:.0f} ms (ratio {ev / floor:.1f}), "
              f"with forecasts {ev_f * 1000:.0f} ms (ratio {ev_f / floor:.1f}); "
              f"{len(defs) / ev_f:.0f} SLOs/s")  # fmt: skip

        step = 0

        def live() -> None:
            nonlocal step
            step += 1
            eng.clock = lambda: (end + step * MIN) / 1000 + 60
            eng.run_once(end + step * MIN, send_alerts=False)

        lv = timed(live)
        print(f"live run (one new minute for every SLI, counted and evaluated): {lv * 1000:.0f} ms")
        print(f"from raw telemetry instead of buckets, each evaluation would cost about the catch-up: "
              f"{catch / ev_f:.0f}x more")  # fmt: skip
        client.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
