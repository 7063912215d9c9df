"""Candidate detector members, measured against the default on the labelled real corpora.

Each candidate scores every point causally; where its score passes its threshold (outside the
warm-up, at most one alert per ``quiet`` points) it alerts in addition to the default ensemble. The
script prints the default's row and the combined row for each corpus and part, so a candidate is
kept only if it adds found windows faster than it adds false detections, on both corpora:

- ``sr``: Spectral Residual (Ren et al., KDD 2019, Microsoft's production detector): the saliency
  of the newest point in the spectral residual of the last ``--window`` points (plus 5
  extrapolated ones), relative to the mean saliency of the 20 points before it.
- ``mp``: the left matrix profile (discords): the distance from the newest subsequence of
  ``--window`` points to its nearest neighbour earlier in the series, as a robust z-score against
  that distance's own last 500 values. Needs ``pip install stumpy`` (not a forewarn dependency);
  exact and quadratic in the series' length, so series are cut to their last 20,000 points.

Run: ``python bench/candidates.py --corpus ../shared/datasets/ms-cloud-monitoring --part tune
--candidate sr --window 64 --threshold 5``. The results are in docs/detectors.md ("what was tried").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from forewarn.detectors.corpus import load_corpus
from forewarn.detectors.ensemble import EnsembleParams
from forewarn.detectors.realdata import SeriesDetector, ensemble_alerts, evaluate_series
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter1d

MAX_POINTS_MP = 20_000


def _filled(values: np.ndarray) -> np.ndarray:
    return pd.Series(values, dtype=float).ffill().bfill().fillna(0.0).to_numpy()


def spectral_residual(
    values: np.ndarray, window: int, extra: int = 5, q: int = 3, local: int = 20
) -> np.ndarray:
    """SR score of each point over the ``window`` points ending at it (0 before a full window)."""
    x = _filled(values)
    out = np.zeros(len(x))
    if len(x) < window:
        return out
    w = sliding_window_view(x, window)
    # the paper's extrapolation: the mean gradient of the last points, continued ``extra`` points
    grad = ((w[:, -1:] - w[:, -6:-1]) / np.arange(5, 0, -1)).mean(axis=1, keepdims=True)
    ahead = w[:, -2:-1] + grad * np.arange(1, extra + 1)
    f = np.fft.fft(np.concatenate([w, ahead], axis=1), axis=1)
    log_amp = np.log(np.abs(f) + 1e-8)
    residual = log_amp - uniform_filter1d(log_amp, q, axis=1, mode="nearest")
    sal = np.abs(np.fft.ifft(np.exp(residual + 1j * np.angle(f)), axis=1))
    mean = sal[:, window - 1 - local : window - 1].mean(axis=1)
    out[window - 1 :] = (sal[:, window - 1] - mean) / (mean + 1e-8)
    return out


def left_discord_z(values: np.ndarray, window: int, memory: int = 500) -> np.ndarray:
    """Robust z-score of each point's left matrix profile distance against its last ``memory``."""
    import stumpy  # optional: only this candidate needs it

    x = _filled(values)
    dist = np.full(len(x), np.nan)
    if len(x) >= 4 * window:
        left = stumpy.stump(x, window)[:, 2].astype(np.int64)
        sub = sliding_window_view(x, window)
        mu, sd = sub.mean(axis=1), sub.std(axis=1)
        ok = left >= 0
        i = np.nonzero(ok)[0]
        j = left[ok]
        flat = (sd[i] < 1e-12) | (sd[j] < 1e-12)
        za = (sub[i] - mu[i, None]) / np.where(sd[i] < 1e-12, 1.0, sd[i])[:, None]
        zb = (sub[j] - mu[j, None]) / np.where(sd[j] < 1e-12, 1.0, sd[j])[:, None]
        d = np.linalg.norm(za - zb, axis=1)
        d[flat] = np.where((sd[i] < 1e-12) & (sd[j] < 1e-12), 0.0, np.sqrt(window))[flat]
        dist[i + window - 1] = d
    s = pd.Series(dist)
    med = s.rolling(memory, min_periods=100).median().shift(1)
    mad = (s - med).abs().rolling(memory, min_periods=100).median().shift(1)
    return ((s - med) / (1.4826 * mad + 1e-9)).fillna(0.0).to_numpy()


def with_candidate(name: str, window: int, threshold: float, params: EnsembleParams) -> SeriesDetector:
    """The default's alerts, plus the candidate's where it passes ``threshold``."""
    base = ensemble_alerts(params)

    def run(timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
        alerts = base(timestamps, values).copy()
        start = max(0, len(values) - MAX_POINTS_MP) if name == "mp" else 0
        score = np.zeros(len(values))
        if name == "sr":
            score = spectral_residual(values, window)
        else:
            score[start:] = left_discord_z(values[start:], window)
        last = -(10**9)
        for i in np.nonzero(score > threshold)[0]:
            if i >= start + params.warmup and i - last > params.quiet:
                alerts[i] = True
            last = i
        return alerts

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", action="append", required=True, help="labelled corpus folder (repeatable)")
    ap.add_argument("--part", choices=("tune", "hold"), default="tune")
    ap.add_argument("--candidate", choices=("sr", "mp"), default="sr")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=5.0)
    a = ap.parse_args()
    params = EnsembleParams()
    for label, det in (
        ("default", ensemble_alerts(params)),
        (f"default + {a.candidate} (window {a.window}, threshold {a.threshold:g})", None),
    ):
        det = det or with_candidate(a.candidate, a.window, a.threshold, params)
        for d in a.corpus:
            t0 = time.perf_counter()
            tallies, points, _ = evaluate_series(load_corpus(d), det, (a.part,))
            total = next(t for (_, _, fam), t in tallies.items() if fam == "all")
            f1, p, r = total.kpi_f1()
            print(
                f"{label} · {d.rstrip('/').split('/')[-1]} · {a.part}: NAB standard {total.nab_score():.1f}, "
                f"low FP {total.nab_score('reward_low_FP_rate'):.1f}, windows {total.windows_found}/{total.windows}, "
                f"false detections {total.false_detections}, KPI F1 {f1:.3f} ({p:.2f} / {r:.2f}), "
                f"events {total.ev.found}/{total.ev.events} [{points:,} points, {time.perf_counter() - t0:.0f} s]",
                flush=True,
            )


if __name__ == "__main__":
    main()
