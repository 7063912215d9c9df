"""The one interface the flows call every detector through, and the episode bookkeeping they share.

A detector takes a batch of points (the flows' long-format signal frame: ``series_id``, ``ts`` in
epoch ms, ``value``, the counts ``n`` / ``k`` / ``dt`` behind the value, the signal ``family`` and
``direction``, plus ``name`` and ``service``) and returns a :class:`Result`: the *onsets* (the
first point of each anomalous episode: a new alert) and which series are still *firing* (inside
an episode that has not recovered). A continuing anomaly is one onset that keeps firing; the flows
turn it into one incident and resolve the incident when nothing fires any more. Every detector
also round-trips its state as JSON-able metadata plus numpy arrays (never pickle), so a restart
or a replay continues exactly where the checkpoint left off.

>>> ep = Episodes(recover=2)
>>> [ep.step(7, bad) for bad in (False, True, True, False, True, False, False, True)]
[(False, False), (True, True), (False, True), (False, True), (False, True), (False, True), (False, False), (True, True)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Finding:
    """One onset (or, for ``kind="forecast"``, one warning) at row ``row`` of the scored batch."""

    row: int
    score: float  # in [0, 1]; the flows weigh evidence by -log10(1 - score)
    expected: float  # what the series usually reads (in its own units), NaN when not meaningful
    component: str  # which test fired: drop, errors, latency, shift, new_template, spike, level, ...
    text: str  # why, in words, without the series' name (the flows prefix it)
    kind: str = "deviation"  # or "forecast"
    detail: dict = field(default_factory=dict)  # e.g. a forecast's eta_s
    # a series derived from the row's service (e.g. ``red.multivariate``) instead of the row's own
    name: str | None = None
    series_id: int | None = None


@dataclass
class Result:
    """What one detector found in one batch."""

    onsets: list[Finding] = field(default_factory=list)
    firing: dict[int, int] = field(default_factory=dict)  # series id -> newest firing point (ms)

    def merge(self, other: Result) -> Result:
        self.onsets.extend(other.onsets)
        for sid, ts in other.firing.items():
            self.firing[sid] = max(ts, self.firing.get(sid, ts))
        return self


class Detector(Protocol):
    """What the score engine calls, the same way for every detector."""

    name: str

    def score(self, points: pd.DataFrame) -> Result:
        """Learn from and judge the batch (each series' points in time order, after its past)."""
        ...

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able metadata and arrays that :meth:`load` restores."""
        ...

    def load(self, meta: dict, arrays: dict[str, np.ndarray]) -> None: ...


class Episodes:
    """Anomalous episodes of point-wise judgements: the first flagged point is the onset, the
    series fires until ``recover`` normal points in a row. ``step`` returns (onset, firing)."""

    def __init__(self, recover: int = 2):
        self.recover = recover
        self.calm: dict[int, int] = {}  # firing series -> normal points in a row so far

    def step(self, sid: int, flagged: bool) -> tuple[bool, bool]:
        if sid not in self.calm:
            if flagged:
                self.calm[sid] = 0
            return flagged, flagged
        self.calm[sid] = 0 if flagged else self.calm[sid] + 1
        if self.calm[sid] >= self.recover:
            del self.calm[sid]
            return False, False
        return False, True

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"ids": np.array(list(self.calm), dtype=np.int64),
                    "calm": np.array(list(self.calm.values()), dtype=np.int64)}  # fmt: skip

    def load(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.calm = {
            int(s): int(c) for s, c in zip(arrays.get("ids", []), arrays.get("calm", []), strict=True)
        }


class EpisodicDetector:
    """Base of the detectors whose only state is their :class:`Episodes` (their models are
    trained elsewhere and loaded read-only), so that a checkpoint holds just that."""

    name = ""

    def __init__(self) -> None:
        self.episodes = Episodes()

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return self.episodes.state()

    def load(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.episodes.load(meta, arrays)


def score_of(p_value: float) -> float:
    """A p-value as a score in [0, 1) (1 - p, kept below 1 so its weight stays finite).

    >>> score_of(1e-6)
    0.999999
    """
    return float(min(1.0 - 1e-12, max(0.0, 1.0 - p_value))) if math.isfinite(p_value) else 0.0


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``prefix/``, without it (detectors share one checkpoint)."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
