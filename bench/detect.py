"""Benchmark: the default ensemble on 10,000 series x 1,000 points, vectorised over series.

Prints points scored per second per core (CPU time of this single-threaded process), model-state memory per series, and the same-run floor:
a plain numpy rolling z-score pass (window 96) over the same array, with the ratio between the two.
Run: ``python bench/detect.py [--series N] [--points T] [--block K]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from forewarn.detectors import EnsembleCore


def floor_zscore(x: np.ndarray, window: int = 96) -> np.ndarray:
    """Rolling z-score of each point against the ``window`` points before it (cumulative sums)."""
    c1 = np.cumsum(np.pad(x, ((0, 0), (1, 0))), axis=1)
    c2 = np.cumsum(np.pad(x * x, ((0, 0), (1, 0))), axis=1)
    s1 = c1[:, window:-1] - c1[:, : -window - 1]
    s2 = c2[:, window:-1] - c2[:, : -window - 1]
    mu = s1 / window
    sd = np.sqrt(np.maximum(s2 / window - mu * mu, 1e-12))
    return np.abs(x[:, window:] - mu) / sd


def make_data(series: int, points: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(points)
    phase = rng.uniform(0, 2 * np.pi, (series, 1))
    x = 100 + 20 * np.sin(2 * np.pi * t / 288 + phase) + rng.normal(0, 2, (series, points))
    x[:, points // 2 :] += rng.choice([0.0, 0.0, 0.0, 15.0], (series, 1))  # a quarter get a level shift
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000)
    ap.add_argument("--block", type=int, default=250, help="points per update call (streaming micro-batches)")
    args = ap.parse_args()
    x = make_data(args.series, args.points)
    n = x.size

    t0 = time.process_time()
    floor_zscore(x)
    floor_s = time.process_time() - t0

    core = EnsembleCore(args.series)
    t0 = time.process_time()
    alerts = 0
    for i in range(0, args.points, args.block):
        alerts += int(core.update(x[:, i : i + args.block]).alert.sum())
    ens_s = time.process_time() - t0

    print(f"data: {args.series} series x {args.points} points = {n:,} points, blocks of {args.block}")
    print(f"floor (numpy rolling z-score): {n / floor_s:,.0f} points/s/core ({floor_s:.2f} s CPU)")
    print(
        f"default ensemble:              {n / ens_s:,.0f} points/s/core ({ens_s:.2f} s CPU), {alerts} alerts"
    )
    print(
        f"ratio ensemble/floor: {floor_s / ens_s:.3f} (ensemble is {ens_s / floor_s:.1f}x the floor's cost)"
    )
    print(f"target 500,000 points/s/core: {'met' if n / ens_s >= 500_000 else 'NOT met'}")
    print(f"model state per series: {core.memory_bytes():,} bytes")
    for step, periods in ((1800, (48, 336)), (300, (288, 2016))):
        seasonal = EnsembleCore(1, periods=periods).memory_bytes()
        print(f"  with daily + weekly views at {step // 60}-minute steps: {seasonal:,} bytes")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
