"""Benchmark: end-to-end scoring with 10,000 active series on embedded chDB.

The score step is the whole pipeline: signals SQL over the OTel tables, cardinality guard, writes
of signals, the ensemble + cold-start + forecasts, correlation, anomaly/incident writes and the
checkpoint of all detector state. Two figures:

* catch-up throughput: points scored per second (wall) while working off a backlog, next to the
  same-run floor (just reading the same points out of ClickHouse into pandas) and their ratio;
* ingest-to-anomaly delay, live: every second 10,000 gauge points are inserted for "now", a few
  series get a spike, and a scoring thread runs micro-batches; the delay is from the insert of
  the spiking point to the commit of the batch that stored its anomaly (p50 / p99). Gauges are
  the ensemble's (cold start judges count signals only), so its warm-up is shortened to the
  backlog here.

Run: ``python bench/score.py [--series N] [--backlog BUCKETS] [--live SECONDS]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def insert_points(
    client, db: str, series: int, ts_s: float, rng: np.random.Generator, spikes: set[int]
) -> None:
    when = datetime.fromtimestamp(ts_s, tz=UTC)
    values = 100 + rng.normal(0, 2, series)
    for i in spikes:
        values[i] += 400
    rows = [[f"svc-{i % 100}", "bench.queue_depth", {"shard": str(i)}, when, when, float(v)]
            for i, v in enumerate(values)]  # fmt: skip
    cols = ["ServiceName", "MetricName", "Attributes", "StartTimeUnix", "TimeUnix", "Value"]
    client.insert("otel_metrics_gauge", rows, column_names=cols, database=db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--backlog", type=int, default=64, help="buckets of history scored in catch-up mode")
    ap.add_argument("--live", type=float, default=20.0, help="seconds of live ingest")
    args = ap.parse_args()

    from forewarn.flows.engine import ScoreEngine
    from forewarn.flows.signals import SignalQueries, Window

    from forewarn.config import load_settings
    from forewarn.storage import open_storage

    data = Path(tempfile.mkdtemp(prefix="fw-bench-score-"))
    s = load_settings(overrides={"data_dir": str(data), "log_level": "WARNING"})
    s.flows.step_s, s.flows.lateness_s = 1.0, 0.3
    s.flows.warmup_points = max(8, args.backlog - 4)  # warm before the live part
    client = open_storage(s)
    db = s.storage.database
    rng = np.random.default_rng(0)

    # -- catch-up throughput over a backlog --------------------------------------------------------
    now = time.time()
    start = int(now) - args.backlog - 2
    for b in range(args.backlog):
        insert_points(client, db, args.series, start + b + 0.5, rng, set())
    end_ms = (start + args.backlog) * 1000
    q = SignalQueries(client, db)
    t0 = time.perf_counter()
    floor_pts = len(q.gauges(Window(start * 1000, end_ms, 1000)))
    floor_s = time.perf_counter() - t0

    eng = ScoreEngine(client, s, "live", clock=time.time)
    eng.start_at(start * 1000)
    t0 = time.perf_counter()
    reps = eng.run_until(end_ms)
    pipe_s = time.perf_counter() - t0
    pts = sum(r.points for r in reps)

    # -- live delay ------------------------------------------------------------------------------
    delays: list[float] = []
    inserted: dict[tuple[int, int], float] = {}  # (series index, bucket second) -> insert wall time
    stop = threading.Event()
    lock = threading.Lock()
    batch_s: list[float] = []
    batch_pts: list[int] = []

    def scorer() -> None:
        while not stop.is_set():
            r = eng.run_once()
            if r is None:
                time.sleep(0.05)
                continue
            done = time.time()
            batch_s.append(r.seconds)
            batch_pts.append(r.points)
            rows = client_s.query(
                "SELECT series_id, toUnixTimestamp64Milli(ts) FROM anomalies WHERE ts >= fromUnixTimestamp64Milli({a:Int64}) "
                "AND ts < fromUnixTimestamp64Milli({b:Int64}) AND startsWith(detector, 'ensemble:')",
                parameters={"a": r.start_ms, "b": r.end_ms},
            ).result_rows
            with lock:
                for sid, ts in rows:
                    key = (ids.get(int(sid), -1), int(ts) // 1000)
                    if key in inserted:
                        delays.append(done - inserted.pop(key))

    from forewarn.flows.signals import series_id

    from forewarn.storage.client import connect

    ids = {series_id("bench.queue_depth", f"svc-{i % 100}", {"shard": str(i)}): i for i in range(args.series)}
    client_s = connect(s.storage_dsn, database=db)
    eng.store.client = client_s  # the scorer thread has its own client (signal queries go through the store)
    th = threading.Thread(target=scorer, daemon=True)
    th.start()
    rnd = random.Random(1)
    t_end = time.time() + args.live
    while time.time() < t_end:
        sec = int(time.time())
        spikes = set(rnd.sample(range(args.series), 5)) if sec % 3 == 0 else set()
        insert_points(client, db, args.series, sec + 0.5, rng, spikes)
        with lock:
            for i in spikes:
                inserted[(i, sec)] = time.time()
        time.sleep(max(0.0, sec + 1 - time.time()))
    time.sleep(3)
    stop.set()
    th.join(30)

    import os

    print(
        f"series: {args.series:,}; backlog {args.backlog} buckets = {pts:,} points; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"floor (read the same points into pandas): {floor_pts / floor_s:,.0f} points/s")
    print(f"score pipeline (catch-up): {pts / pipe_s:,.0f} points/s ({pipe_s:.2f} s, {len(reps)} batches)")
    print(f"ratio pipeline / floor: {pts / pipe_s / (floor_pts / floor_s):.3f}")
    if batch_s:
        print(
            f"live micro-batches: {len(batch_s)}, median {np.median(batch_s):.3f} s for a median "
            f"{np.median(batch_pts):,.0f} points ({sum(batch_pts) / sum(batch_s):,.0f} points/s while live)"
        )
    if delays:
        d = np.array(delays)
        print(f"ingest -> anomaly delay over {len(d)} injected spikes: p50 {np.percentile(d, 50):.2f} s, "
              f"p99 {np.percentile(d, 99):.2f} s (bucket 1 s + lateness {s.flows.lateness_s} s included)")  # fmt: skip
    else:
        print("ingest -> anomaly delay: no injected spike was detected", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
