"""Saturation warnings on a stream: time to the limit of every series that has one, point by point.

Series whose name matches a glob of ``limits`` (``*utilization*`` -> 1, ``*percent*`` -> 100; not
processor time or a runtime's event loop, which are load rather than a resource that fills; of a
series split by state only the ``used`` part) keep their last ``history`` points; after each point :meth:`.SaturationForecaster.forecast_recent`
fits the current trend (the longest recent straight stretch, so a fill that began a minute ago is
seen as soon as it is significant) and the series warns while even the slow end of the band
reaches the limit within ``horizon_s`` (a rise that is barely there warns no one) and within
``EXTRAPOLATION`` times the stretch the trend was seen over (two minutes of rising memory do not
predict the next three hours; a disk seen filling for a minute may well be full in five). Each warning point is a ``kind="forecast"`` finding (its ``detail`` holds the
estimate and band) and the series fires while it warns. Works from the first points of a series:
it needs no warm-up. One forecast per point, so batching does not change the result.

>>> import pandas as pd
>>> sat = Saturation({"*utilization*": 1.0}, horizon_s=3600)
>>> t = list(range(0, 600_000, 10_000))
>>> v = [0.6 if ms < 480_000 else 0.6 + (ms - 480_000) / 1000 * 0.4 / 360 for ms in t]
>>> pts = pd.DataFrame({"series_id": 5, "ts": t, "value": v, "name": "system.filesystem.utilization"})
>>> res = sat.score(pts)
>>> res.onsets[0].row, round(res.onsets[0].detail["eta_s"])
(53, 310)
>>> sat.limit("nodejs.eventloop.utilization") is None, sat.limit("system.memory.utilization")
(True, 1.0)
"""

from __future__ import annotations

import fnmatch

import numpy as np
import pandas as pd
from forewarn.detectors.forecast import SaturationForecaster, human_duration
from forewarn.detectors.scoring import Finding, Result

EXTRAPOLATION = 8.0
# utilizations that measure load: processor time, and a runtime's event loop (Node.js's
# nodejs.eventloop.utilization rose with a x3 traffic surge on the test bed and was "forecast full")
LOAD = ("cpu", "eventloop")


class Saturation:
    """Streaming time-to-limit warnings (see the module docstring); a :class:`.scoring.Detector`."""

    name = "saturation"

    def __init__(self, limits: dict[str, float], horizon_s: float = 6 * 3600.0, history: int = 120,
                 alpha: float = 1e-3):  # fmt: skip
        self.limits, self.horizon_s, self.history, self.alpha = dict(limits), horizon_s, history, alpha
        self.index: dict[int, int] = {}
        self.t = np.full((0, history), np.nan)
        self.v = np.full((0, history), np.nan)
        self.count = np.zeros(0, dtype=np.int64)
        self._fc: dict[float, SaturationForecaster] = {}

    def limit(self, name: str) -> float | None:
        if any(k in name for k in LOAD):  # load, not a resource that fills up
            return None
        for pattern, limit in self.limits.items():
            if fnmatch.fnmatchcase(name, pattern):
                return float(limit)
        return None

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"ids": np.array(list(self.index), dtype=np.int64), "t": self.t, "v": self.v,
                    "count": self.count}  # fmt: skip

    def load(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if "ids" in arrays and arrays["t"].shape[1:] == (self.history,):
            self.index = {int(s): i for i, s in enumerate(arrays["ids"])}
            self.t, self.v, self.count = arrays["t"], arrays["v"], arrays["count"].astype(np.int64)

    def _rows(self, ids: list[int]) -> np.ndarray:
        fresh = [s for s in dict.fromkeys(ids) if s not in self.index]
        if fresh:
            self.index.update({s: len(self.index) + i for i, s in enumerate(fresh)})
            pad = np.full((len(fresh), self.history), np.nan)
            self.t, self.v = np.vstack([self.t, pad]), np.vstack([self.v, pad])
            self.count = np.concatenate([self.count, np.zeros(len(fresh), dtype=np.int64)])
        return np.fromiter((self.index[s] for s in ids), dtype=np.int64, count=len(ids))

    def score(self, points: pd.DataFrame) -> Result:
        out = Result()
        if points.empty:
            return out
        limits = {n: lim for n in points["name"].unique() if (lim := self.limit(n)) is not None}
        if not limits:
            return out
        sel = np.flatnonzero(points["name"].isin(list(limits)).to_numpy() & _used(points))
        if not len(sel):
            return out
        sub = points.iloc[sel]
        ids = sub["series_id"].astype(np.int64).tolist()
        rows = self._rows(ids)
        ts, vals = sub["ts"].to_numpy(np.int64), sub["value"].to_numpy(float)
        lim = np.array([limits[n] for n in sub["name"]])
        order = np.argsort(rows, kind="stable")
        rank = np.empty(len(rows), dtype=np.int64)
        _, start, counts = np.unique(rows[order], return_index=True, return_counts=True)
        rank[order] = np.arange(len(rows)) - np.repeat(start, counts)
        for r in range(int(rank.max()) + 1):
            pts = np.flatnonzero(rank == r)
            rr = rows[pts]
            slot = self.count[rr] % self.history
            self.t[rr, slot], self.v[rr, slot] = ts[pts] / 1000.0, vals[pts]
            self.count[rr] += 1
            idx = (self.count[rr][:, None] + np.arange(self.history)[None, :]) % self.history
            t_hist, v_hist = self.t[rr[:, None], idx], self.v[rr[:, None], idx]  # oldest first
            for limit in np.unique(lim[pts]):
                j = np.flatnonzero(lim[pts] == limit)
                self._judge(pts[j], sel, t_hist[j], v_hist[j], float(limit), ids, ts, out)
        out.onsets.sort(key=lambda f: f.row)
        return out

    def _judge(self, pts, sel, t_hist, v_hist, limit: float, ids, ts, out: Result) -> None:
        fc = self._fc.setdefault(limit, SaturationForecaster(limit, window=self.history))
        with np.errstate(all="ignore"):
            unit = np.nanmedian(v_hist, axis=1) <= 1.5 * limit  # otherwise not measured in that unit
        keys = [str(ids[i]) for i in pts]
        with np.errstate(all="ignore"):  # how often the series reports: a minute for an SDK's default
            d = np.diff(t_hist, axis=1)
            every = np.array([np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else 0.0 for r in d])
        for i, f in zip(pts, fc.forecast_recent(keys, t_hist, v_hist, self.alpha), strict=True):
            # a line is trusted for at most EXTRAPOLATION times as long as it was seen
            if not unit[np.flatnonzero(pts == i)[0]] or not f.eta_high_s <= self.horizon_s:
                continue
            if f.eta_s > 0 and not f.eta_s <= EXTRAPOLATION * f.span_s:
                continue
            detail = {"eta_s": f.eta_s, "eta_low_s": f.eta_low_s, "eta_high_s": f.eta_high_s,
                      "limit": limit, "current": f.current,
                      "every_s": float(every[np.flatnonzero(pts == i)[0]])}  # fmt: skip
            score = 1.0 - min(f.eta_s / self.horizon_s, 1.0) * 1e-3
            if f.eta_s > 0:
                band = f"{human_duration(f.eta_low_s)} – {human_duration(f.eta_high_s)}"
                text = f"full in ~{human_duration(f.eta_s)} ({band}) at the current rate, now {f.current:.4g} of {limit:g}"
            else:
                text = f"at or above its limit {limit:g} ({f.current:.4g})"
            out.onsets.append(Finding(int(sel[i]), score, limit, "saturation", text, "forecast", detail))
            out.firing[int(ids[i])] = int(ts[i])


def _used(points: pd.DataFrame) -> np.ndarray:
    """Points of the part that fills up: a series split by state (used, free, cached, ...) only
    counts for its ``used`` state."""
    if "labels" not in points:
        return np.ones(len(points), dtype=bool)
    return np.fromiter(
        (all(v == "used" for k, v in dict(lab or {}).items() if k == "state" or k.endswith(".state"))
         for lab in points["labels"]), bool, len(points),
    )  # fmt: skip
