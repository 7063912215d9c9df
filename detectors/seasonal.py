"""Seasonal baselines from history: per series and hour of the day (UTC), the median and a robust
spread (IQR) of its stored values, fitted in batch (``forewarn flows train``) and scored on the
stream.

A point is unusual for *its hour* when it departs from that hour's median by more than ``K``
robust sigmas (and a floor: 5 % of the median, or an absolute floor for ratios and latency
shifts), in the bad direction of its signal, even if the value is ordinary at other hours (a
nightly batch load at noon, a busy-hour traffic level at 4 a.m.). Only series with history over
at least ``MIN_DAYS`` days and ``MIN_POINTS`` points per hour get a baseline; weekly cycles are
left to the ensemble's seasonal views.

>>> import pandas as pd
>>> stats = pd.DataFrame({"series_id": [7], "slot": [3], "med": [100.0], "sigma": [5.0]})
>>> det = SeasonalDetector(SeasonalBaseline.fit(stats), version=1)
>>> ts = 3 * 3600 * 1000 + 4 * 86400 * 1000  # 1970-01-05 03:00 UTC -> slot 3
>>> pts = pd.DataFrame({"series_id": [7, 7], "ts": [ts, ts + 10_000], "value": [103.0, 190.0],
...                     "family": "gauge", "direction": 0})
>>> [(f.row, f.text) for f in det.score(pts).onsets]
[(1, '190 is unusual for this hour of the day (usual ~100, +18.0 robust sd)')]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from forewarn.detectors.scoring import EpisodicDetector, Finding, Result

K = 8.0
MIN_DAYS = 2
MIN_POINTS = 3
SLOTS = 24
FLOORS = {"ratio": 0.05, "shift": 0.5}  # smallest absolute change worth an alert, by family


def slot_of(ts_ms: np.ndarray) -> np.ndarray:
    """Hour of the day, UTC."""
    return (np.asarray(ts_ms, dtype=np.int64) // 3_600_000 % SLOTS).astype(np.int64)


class SeasonalBaseline:
    """The fitted table: (series, hour) -> median, sigma."""

    def __init__(self, table: pd.DataFrame):
        self.table = table

    @classmethod
    def fit(cls, stats: pd.DataFrame) -> SeasonalBaseline:
        """From per (series, slot) statistics with columns ``series_id, slot, med, sigma``."""
        return cls.from_arrays({"series_id": stats["series_id"].to_numpy(np.uint64),
                                "slot": stats["slot"].to_numpy(np.int64),
                                "median": stats["med"].to_numpy(float),
                                "sigma": stats["sigma"].to_numpy(float)})  # fmt: skip

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SeasonalBaseline:
        t = pd.DataFrame({k: arrays[k] for k in ("series_id", "slot", "median", "sigma")})
        t["series_id"] = t["series_id"].astype(np.uint64).astype(np.int64)
        return cls(t.set_index(["series_id", "slot"]))

    def arrays(self) -> dict[str, np.ndarray]:
        t = self.table.reset_index()
        return {"series_id": t["series_id"].to_numpy(np.int64).astype(np.uint64),
                "slot": t["slot"].to_numpy(np.int64), "median": t["median"].to_numpy(float),
                "sigma": t["sigma"].to_numpy(float)}  # fmt: skip

    def z(self, points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(hour median, signed z in the bad direction's sense) per point; NaN without a baseline."""
        key = pd.MultiIndex.from_arrays(
            [points["series_id"].to_numpy(np.int64), slot_of(points["ts"].to_numpy())],
            names=["series_id", "slot"],
        )
        ref = self.table.reindex(key)
        med, sigma = ref["median"].to_numpy(), ref["sigma"].to_numpy()
        v = points["value"].to_numpy(float)
        flo = points["family"].map(FLOORS).fillna(0.0).to_numpy(float)
        scale = np.maximum.reduce([sigma, 0.05 * np.abs(med), flo / K, np.full(len(v), 1e-9)])
        with np.errstate(invalid="ignore"):
            return med, (v - med) / scale


class SeasonalDetector(EpisodicDetector):
    """Hour-of-day baselines on the stream, with episodes; a :class:`.scoring.Detector`."""

    name = "seasonal"

    def __init__(self, baseline: SeasonalBaseline, version: int = 0):
        super().__init__()
        self.baseline, self.version = baseline, version

    def score(self, points: pd.DataFrame) -> Result:
        out = Result()
        if points.empty or self.baseline.table.empty:
            return out
        med, z = self.baseline.z(points)
        d = points["direction"].to_numpy(int)
        bad = np.where(d > 0, z, np.where(d < 0, -z, np.abs(z))) > K
        known = np.isfinite(med)
        v = points["value"].to_numpy(float)
        order = np.argsort(points["ts"].to_numpy(np.int64), kind="stable")
        sids, ts = points["series_id"].to_numpy(np.int64), points["ts"].to_numpy(np.int64)
        for i in order[known[order]]:
            onset, firing = self.episodes.step(int(sids[i]), bool(bad[i]))
            if onset:
                text = (f"{v[i]:.4g} is unusual for this hour of the day "
                        f"(usual ~{med[i]:.4g}, {z[i]:+.1f} robust sd)")  # fmt: skip
                score = 1.0 - 1e-4 * K / max(abs(z[i]), K)
                out.onsets.append(Finding(int(i), score, float(med[i]), "seasonal", text))
            if firing:
                out.firing[int(sids[i])] = int(ts[i])
        out.onsets.sort(key=lambda f: f.row)
        return out
