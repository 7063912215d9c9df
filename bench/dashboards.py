"""Dashboard load benchmark: how long each forewarn dashboard takes to query, on an embedded store
holding a few hours of the synthetic shop (OTLP through the collector's conversion, scored by the
real flows), i.e. what an SRE waits for when opening it over that range.

Floor, measured in the same run on the same data: one full scan of the spans in range
(``SELECT count(), sum(Duration) FROM otel_traces WHERE $__timeFilter(Timestamp)``), the least any
trace panel must do. ``ratio`` = dashboard time / floor: how many full span scans a dashboard costs.

    .venv/bin/python bench/dashboards.py [--minutes 240] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from forewarn.dashboards.build import load_dashboards
from forewarn.dashboards.macros import TimeRange, expand
from forewarn.dashboards.runner import run_dashboard
from forewarn.dashboards.sample import populate

from forewarn.config import load_settings
from forewarn.storage import open_storage

FLOOR_SQL = "SELECT count(), sum(Duration) FROM otel_traces WHERE $__timeFilter(Timestamp)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=240, help="event time of telemetry in the store")
    ap.add_argument("--repeat", type=int, default=3, help="runs per dashboard (median reported)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="forewarn-bench-dash-"))
    try:
        s = load_settings(
            overrides={
                "data_dir": str(tmp),
                "storage": {"dsn": f"chdb://{tmp / 'chdb'}", "database": "bench"},
            }
        )
        client = open_storage(s)
        t = time.perf_counter()
        info = populate(client, s, minutes=args.minutes, batch_ms=10 * 60_000)
        spans = info.rows["otel_traces"]
        print(f"store: {spans} spans, {info.rows['otel_logs']} logs, {info.anomalies} anomalies "
              f"({args.minutes} min, filled and scored in {time.perf_counter() - t:.0f} s)")  # fmt: skip
        r = TimeRange(info.start_ms / 1000, info.end_ms / 1000 + 60, interval_s=60)

        def timed(fn) -> float:
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - t0)
            return statistics.median(runs)

        floor = timed(lambda: client.query(expand(FLOOR_SQL, r)))
        print(
            f"floor: one scan of the spans in range {floor * 1000:.1f} ms ({spans / floor / 1e6:.1f} M spans/s)"
        )
        print(f"{'dashboard':<28}{'queries':>8}{'rows':>9}{'ms':>9}{'ratio':>8}")
        total = 0.0
        for dash in load_dashboards():
            res = run_dashboard(client, dash, r, raise_errors=True)
            n = len(res.targets) + len(res.annotations)
            rows = sum(len(x.frame) for x in [*res.targets, *res.annotations])
            sec = timed(lambda dash=dash: run_dashboard(client, dash, r, raise_errors=True))
            total += sec
            print(f"{dash['uid']:<28}{n:>8}{rows:>9}{sec * 1000:>9.0f}{sec / floor:>8.1f}")
        print(f"{'all five':<28}{'':>8}{'':>9}{total * 1000:>9.0f}{total / floor:>8.1f}")
        client.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
