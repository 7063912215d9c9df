"""Cold start: blatant deviations of series the ensemble is still warming up on.

The ensemble needs ``warmup`` points (20 minutes at 10 s buckets) before it may alert, because its
scores are calibrated on each series' own past. A service deployed five minutes ago can still
break; this rule flags only gross departures from the median of the (up to 30) points seen so far:
beyond ``k`` robust sigmas (MAD), beyond ``rel`` of the median, and beyond an absolute floor per
signal family (so a single error in a quiet service or one request more is not an incident).
It hands over to the ensemble when the series has ``warmup`` points. Vectorised over series: the
k-th new point of every series is judged in one pass, so batching does not change the result.

>>> import numpy as np
>>> cs = ColdStart(min_points=4)
>>> ids = ["a"] * 6
>>> hits = cs.check(ids, ["red.p95"] * 6, np.array([10.0, 11, 9, 10, 10.5, 60]))
>>> [(i, round(med, 2)) for i, med, thr, score in hits]
[(5, 10.0)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from forewarn.flows.signals import is_up_only

HISTORY = 30
FLOORS = {  # smallest absolute change worth an incident, by signal name prefix
    "red.error_ratio": 0.05,
    "red.rate": 1.0,
    "log.rate": 1.0,
    "log.error_rate": 0.2,
    "log.new_templates": 0.5,
    "latency.shift": 0.5,
}


def floor(name: str) -> float:
    for prefix, v in FLOORS.items():
        if name.startswith(prefix):
            return v
    return 0.0


class ColdStart:
    def __init__(self, min_points: int = 6, k: float = 8.0, rel: float = 0.5):
        self.min_points, self.k, self.rel = min_points, k, rel
        self.index: dict[str, int] = {}
        self.hist = np.full((0, HISTORY), np.nan)
        self.count = np.zeros(0, dtype=np.int64)

    def _rows(self, ids: Sequence[str]) -> np.ndarray:
        fresh = [s for s in dict.fromkeys(ids) if s not in self.index]
        if fresh:
            base = len(self.index)
            self.index.update({s: base + i for i, s in enumerate(fresh)})
            self.hist = np.vstack([self.hist, np.full((len(fresh), HISTORY), np.nan)])
            self.count = np.concatenate([self.count, np.zeros(len(fresh), dtype=np.int64)])
        return np.fromiter((self.index[s] for s in ids), dtype=np.int64, count=len(ids))

    def check(self, ids: Sequence[str], names: Sequence[str], values: np.ndarray,
              active: np.ndarray | None = None) -> list[tuple[int, float, float, float]]:  # fmt: skip
        """Judge points (time-ordered per series) and record them; ``active`` masks the points of
        series still warming up. Returns (point index, median, threshold, score) of the hits."""
        values = np.asarray(values, dtype=float)
        if not len(values):
            return []
        rows = self._rows(ids)
        up = np.fromiter((is_up_only(n) for n in names), dtype=bool, count=len(names))
        flo = np.fromiter((floor(n) for n in names), dtype=float, count=len(names))
        active = np.ones(len(values), dtype=bool) if active is None else np.asarray(active, dtype=bool)
        # rank of each point among its series' points in this call: round r handles every r-th point
        order = np.argsort(rows, kind="stable")
        rank = np.empty(len(rows), dtype=np.int64)
        _, start, counts = np.unique(rows[order], return_index=True, return_counts=True)
        rank[order] = np.arange(len(rows)) - np.repeat(start, counts)
        hits: list[tuple[int, float, float, float]] = []
        for r in range(int(rank.max()) + 1):
            pts = np.flatnonzero(rank == r)
            rr = rows[pts]
            h = self.hist[rr]
            judge = active[pts] & (self.count[rr] >= self.min_points)
            if judge.any():
                with np.errstate(invalid="ignore"):
                    med = np.nanmedian(np.where(judge[:, None], h, 0.0), axis=1)
                    mad = (
                        np.nanmedian(np.abs(np.where(judge[:, None], h, 0.0) - med[:, None]), axis=1) * 1.4826
                    )
                thr = np.maximum.reduce(
                    [self.k * mad, self.rel * np.abs(med), flo[pts], np.full(len(pts), 1e-9)]
                )
                v = values[pts]
                dev = np.where(up[pts], v - med, np.abs(v - med))
                for j in np.flatnonzero(judge & (dev > thr)):
                    hits.append(
                        (int(pts[j]), float(med[j]), float(thr[j]), float(1.0 - 1e-4 * thr[j] / dev[j]))
                    )
            self.hist[rr, self.count[rr] % HISTORY] = values[pts]
            self.count[rr] += 1
        hits.sort()
        return hits

    def snapshot(self) -> tuple[list[str], dict[str, np.ndarray]]:
        return list(self.index), {"hist": self.hist, "count": self.count}

    @classmethod
    def restore(cls, ids: list[str], arrays: dict[str, np.ndarray], min_points: int = 6) -> ColdStart:
        cs = cls(min_points)
        cs.index = {s: i for i, s in enumerate(ids)}
        cs.hist, cs.count = arrays["hist"].astype(float), arrays["count"].astype(np.int64)
        return cs
