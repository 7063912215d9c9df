"""The default streaming ensemble (:class:`.multiseries.MultiSeriesDetector`) behind the scoring
interface: every series of the batch, once warm, against its own past.

Onsets in the harmless direction of their signal (``direction`` +1: only a rise is bad, -1: only a
fall) are dropped, and so is the rest of that episode. So is the onset of an error share (family
``ratio``, ``k`` errors) or of a rate of failed requests (family ``errors``, ``n`` of them) that
rests on fewer errors than cold start asks for (``min_errors``): on a route
with a low base rate of failures, 1 failed request of 10 is a 10 % share the series has rarely
shown, but not an incident. Likewise a latency onset (family ``latency``, in its ``unit``) must
rise by cold start's ``latency_floor_ms`` (20 ms): an internal span going from 0.27 to 0.31 ms is
unusual for it and of no interest to anyone. Nor is a rise of a count (family ``volume`` or
``traffic``) to fewer than ``min_errors`` events: a service that seldom logs had one log line in a
bucket paged, after the warm-up of an extended test-bed run. A process's resident memory (family ``memory``) is
left to cold start's leak test for its whole life: its level follows load and heap resizes, and
in a test-bed run the ensemble's level shifts of it kept an outage's incident open for five
minutes. Which series are firing comes from the ensemble's ``last_firing`` flags, and a series
counts as firing until its newest point outside the band its episode left (``last_active``), not
through the ``quiet`` points that end the episode: those kept an incident open two minutes after
its fault had ended. An ensemble without the flags counts an onset's own time as the only
activity of its episode.

>>> import numpy as np, pandas as pd
>>> det = Streaming()
>>> v = 10 + np.sin(np.arange(400) / 50) + np.random.default_rng(1).normal(0, 0.1, 400)
>>> v[350] = 13
>>> pts = pd.DataFrame({"series_id": 9, "ts": np.arange(400) * 1000, "value": v, "direction": 0})
>>> [(f.row, f.component) for f in det.score(pts).onsets]
[(350, 'spike')]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from forewarn.detectors.coldstart import MS_PER, ColdStartParams
from forewarn.detectors.ensemble import EnsembleParams
from forewarn.detectors.multiseries import POLICY, MultiSeriesDetector
from forewarn.detectors.scoring import Finding, Result

MIN_ERRORS = ColdStartParams.min_errors
LATENCY_FLOOR_MS = ColdStartParams.latency_floor_ms


class Streaming:
    name = "ensemble"

    def __init__(
        self,
        params: EnsembleParams | None = None,
        periods: tuple[int, ...] = (),
        unjudged: tuple[str, ...] = (),
    ):
        self.det = MultiSeriesDetector(params, periods)
        self.unjudged = tuple(unjudged)  # series-name prefixes this detector leaves alone
        self.muted: set[str] = set()  # series inside an episode that went the harmless way

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = self.det.snapshot()
        return {"detector": meta, "muted": sorted(self.muted)}, arrays

    def load(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if "detector" in meta:
            mine = self.det.params
            policy = {k: getattr(mine, k) for k in POLICY}  # the configured ones, not the snapshot's
            self.det = MultiSeriesDetector.restore(meta["detector"], arrays, policy)
            self.muted = set(meta.get("muted", []))

    def score(self, points: pd.DataFrame) -> Result:
        out = Result()
        pos = np.arange(len(points))  # row of each judged point in the frame the caller passed
        keep = np.ones(len(points), dtype=bool)
        if self.unjudged and "name" in points and len(points):
            keep &= ~points["name"].astype(str).str.startswith(self.unjudged).to_numpy()
        if "family" in points:  # a process's memory is cold start's leak test's for good
            keep &= points["family"].to_numpy(str) != "memory"
        if not keep.all():
            points, pos = points[keep], pos[keep]
        if points.empty:
            return out
        ids = points["series_id"].astype(str).to_numpy()
        ts = points["ts"].to_numpy(np.int64)
        found = self.det.update(ids, ts.astype(float), points["value"].to_numpy(float))
        row_of = {(s, int(t)): i for i, (s, t) in enumerate(zip(ids, ts, strict=True))}
        direction = dict(zip(ids, points["direction"].to_numpy(int), strict=True))
        few = np.zeros(len(points), dtype=bool)
        thin = np.zeros(len(points), dtype=bool)  # a count that rose to fewer than MIN_ERRORS events
        if {"family", "k", "n"} <= set(points.columns):  # error shares and rates on too few errors
            fam = points["family"].to_numpy(str)
            few = ((fam == "ratio") & ~(points["k"].to_numpy(float) >= MIN_ERRORS)) | (
                (fam == "errors") & ~(points["n"].to_numpy(float) >= MIN_ERRORS)
            )
            thin = np.isin(fam, ("volume", "traffic")) & ~(points["n"].to_numpy(float) >= MIN_ERRORS)
        floor = np.full(len(points), np.nan)  # latency: the smallest rise worth an incident, in the unit
        if {"family", "unit"} <= set(points.columns):
            lat = np.flatnonzero(points["family"].to_numpy(str) == "latency")
            units = points["unit"].to_numpy(str)[lat]
            floor[lat] = LATENCY_FLOOR_MS / np.fromiter(
                (MS_PER.get(u, np.nan) for u in units), float, len(lat)
            )
        for a in found:
            ex = a.explanation
            d = direction.get(a.series_id, 0)
            row = row_of[(a.series_id, int(a.timestamp))]
            harmless = (d > 0 and ex.observed <= ex.expected) or (d < 0 and ex.observed >= ex.expected)
            slight = ex.observed - ex.expected < floor[row]  # 0.27 -> 0.31 ms of a middleware span
            if harmless or few[row] or slight or (thin[row] and ex.observed > ex.expected):
                self.muted.add(a.series_id)
                continue
            self.muted.discard(a.series_id)
            out.onsets.append(
                Finding(int(pos[row]), float(a.score), float(ex.expected), ex.component, ex.text)
            )
            out.firing[int(a.series_id)] = int(a.timestamp)
        firing = getattr(self.det, "last_firing", None)
        active = getattr(self.det, "last_active", {})
        if firing is not None:
            for sid, flags in firing.items():
                flags = np.asarray(flags, dtype=bool)
                if not flags.any() or sid in self.muted:
                    if not flags[-1:].any():
                        self.muted.discard(sid)
                    continue
                # the newest point still outside the band the episode left: the points that
                # only count down its end are back to normal and keep no incident open
                hot = np.asarray(active.get(sid, flags), dtype=bool) & flags
                if hot.any():
                    times = self.det.last_times[sid]  # the points the flags belong to, as scored
                    out.firing[int(sid)] = max(
                        out.firing.get(int(sid), 0), int(times[np.flatnonzero(hot)[-1]])
                    )
        out.onsets.sort(key=lambda f: f.row)
        return out
