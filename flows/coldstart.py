"""Cold start: blatant deviations of series the ensemble is still warming up on.

The ensemble needs ``warmup`` points (20 minutes at 10 s buckets) before it may alert, because its
scores are calibrated on each series' own past. A service deployed five minutes ago can still
break; this rule flags only gross departures from the median of the few points seen so far:
beyond ``k`` robust sigmas (MAD), beyond ``rel`` of the median, and beyond an absolute floor per
signal family (so a single error in a quiet service or one request more is not an incident).
It hands over to the ensemble when the series has ``warmup`` points.

>>> cs = ColdStart(min_points=4)
>>> [cs.check("1", "red.p95", v) for v in (10.0, 11, 9, 10, 10.5)][-1] is None
True
>>> round(cs.check("1", "red.p95", 60.0)[0], 1)
10.0
"""

from __future__ import annotations

from collections import deque

import numpy as np
from forewarn.flows.signals import is_up_only

HISTORY = 30
FLOORS = {  # smallest absolute change worth an incident, by signal name prefix
    "red.error_ratio": 0.05,
    "red.rate": 1.0,
    "log.rate": 1.0,
    "log.error_rate": 0.5,
    "log.new_templates": 0.5,
    "latency.shift": 0.5,
}


def floor(name: str) -> float:
    for prefix, v in FLOORS.items():
        if name.startswith(prefix):
            return v
    return 0.0


class ColdStart:
    def __init__(self, min_points: int = 6, k: float = 8.0, rel: float = 0.5, state: dict | None = None):
        self.min_points, self.k, self.rel = min_points, k, rel
        self.hist: dict[str, deque] = {s: deque(v, maxlen=HISTORY) for s, v in (state or {}).items()}

    def check(self, sid: str, name: str, value: float) -> tuple[float, float, float] | None:
        """(expected, threshold, score) when ``value`` is a gross deviation; records the value."""
        h = self.hist.setdefault(sid, deque(maxlen=HISTORY))
        out = None
        if len(h) >= self.min_points:
            arr = np.fromiter(h, float)
            med = float(np.median(arr))
            mad = float(np.median(np.abs(arr - med))) * 1.4826
            thr = max(self.k * mad, self.rel * abs(med), floor(name), 1e-9)
            dev = value - med if is_up_only(name) else abs(value - med)
            if dev > thr:
                out = (med, thr, 1.0 - 1e-4 * thr / dev)
        h.append(float(value))
        return out

    def forget(self, sid: str) -> None:
        """The series is warm: the ensemble takes over."""
        self.hist.pop(sid, None)

    def state(self) -> dict[str, list[float]]:
        return {s: list(h) for s, h in self.hist.items()}
