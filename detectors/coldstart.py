"""Cold start: what can be judged before the ensemble is warm, with the statistics of counts.

The ensemble needs ``warmup`` points of a series before it may alert (its scores are calibrated on
the series' own past). Until then this detector judges the families whose values come from counts,
against the traffic seen so far, so that the evidence it asks for grows with the traffic:

* **traffic** (request, span and log rates; ``n`` events over ``dt`` seconds): a *drop* only (a
  surge is not an incident). The count of the last point, and of the last three and six pooled
  (evidence builds up over time where traffic is thin), is tested against a negative binomial
  predictive (the Gamma-Poisson posterior of the rate, widened by the
  over-dispersion the history shows, estimated robustly), and must also fall below ``drop`` of the
  usual level;
* **ratio** (error shares; ``k`` of ``n``): a *rise* only, tested (on the same windows) with the
  beta-binomial predictive of the share seen so far, and it must exceed the usual share by ``ratio_floor`` and
  ``ratio_gain`` times, with at least ``min_errors`` errors: 1 error in 1 request is not a 100 %
  error rate, 40 errors in 100 requests after 2,000 clean ones is;
* **latency** (percentiles of durations, ``n`` observations): a rise of at least ``latency_gain``
  times the usual level (``tail_gain`` for p99), ``latency_floor_ms`` in absolute terms (the
  points' ``unit`` says how long a unit is), and beyond what the series' own spread allows (on
  the log scale, widened when the bucket holds fewer observations than usual), for the point alone
  or the median of the last three; a percentile is judged only over enough observations (p95:
  20, p99: 100), since the p99 of a dozen requests is their maximum;
* **memory** (a process's resident memory): a *leak*, that is memory more than ``memory_gain``
  above the highest value of the baseline and still growing over the last three buckets (its
  persistence), once the baseline holds ``memory_points`` points (a process's start-up growth is
  behind it). A collector's sawtooth stays under its own high, a step up to a new level stops
  growing, and slow growth is followed by the high; a leak of a few MB a second on a process of
  100 MB is found within a few buckets. Memory stays this test's for the series' whole life (the
  ensemble leaves it alone: its level follows load and heap resizes). Where the process has a
  limit, the saturation forecast says when it is reached.

Lost traffic, too, stays this detector's for the series' whole life (the ensemble judges it as
well): the ensemble's calibration learns from every move a series makes, and after a promotion's
surge (traffic x3 for two minutes) it takes an 80 % drop for routine for hours, while a drop
against the counts of the last ``history`` points is as clear as ever.

A point shows the *effect* when its size (alone, or pooled with the two before it) clears those
floors; an onset needs the effect in
``persist`` points in a row (the flows ask for ``flows.persist_s``, at least two buckets), so one
odd bucket (a paused load generator, a slow garbage collection) is not an incident, and the
evidence. Other
families (other gauges, counters, log templates) wait for the ensemble (log templates: see
:mod:`.novelty`; saturation: :mod:`.saturation`). A flagged point is the onset of an episode; its
series keeps firing, with its baseline frozen, until ``recover`` points in a row are back to
normal; an episode longer than ``history`` points is taken as the new normal. A series whose
effect began before its warm-up ended stays ours until the effect ends: the ensemble leaves such a
stretch to cold start, so a fault that begins as the series becomes warm is not lost between the
two. Points that show the effect without the evidence (the first bucket of a burst, on little
traffic) stay out of the baseline as well, while at least half of it is left. Vectorised over
series: the r-th new point of every series is judged in one pass, so batching does not change the
result.

>>> import pandas as pd
>>> cs = ColdStart()
>>> rates = [120, 118, 125, 119, 121, 122, 117, 124, 20, 22]  # requests per 10 s bucket, then a drop
>>> pts = pd.DataFrame({"series_id": 1, "ts": range(10), "value": [r / 10 for r in rates],
...                     "n": rates, "k": float("nan"), "dt": 10.0, "family": "traffic", "direction": -1})
>>> [(f.row, f.component) for f in cs.score(pts).onsets]  # two points of it: 20 s
[(9, 'drop')]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from forewarn.detectors.scoring import Finding, Result, score_of
from scipy import stats

FAMILIES = ("traffic", "ratio", "latency", "memory")
MS_PER = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "min": 6e4, "h": 3.6e6}
POOLS = (3, 6)  # points pooled by the window tests (the newest included): evidence that builds up
RECENT = max(POOLS)
EFFECT_POOL = 3  # an effect (for persistence and recovery) is judged on at most this many points
CHI2_1_MEDIAN = 0.4549
_COLS = ("v", "n", "k", "dt")


@dataclass(frozen=True)
class ColdStartParams:
    warmup: int = 120  # points after which the ensemble judges the series (its warm-up)
    min_points: int = 6  # baseline points before anything is judged
    history: int = 60  # baseline points kept per series
    alpha: float = 1e-4  # significance of each test
    drop: float = 0.5  # traffic: below this fraction of the usual level
    ratio_floor: float = 0.05  # ratio: this much above the usual share ...
    ratio_gain: float = 2.0  # ... and this many times it
    min_errors: int = 3
    latency_gain: float = 1.5
    tail_gain: float = 2.0  # p99 and beyond: the tail is noisier
    latency_floor_ms: float = 20.0  # ... and at least this much slower (percentiles of a histogram
    # move a whole bucket at a time: 10 ms -> 20 ms is a bucket boundary, not an incident)
    min_n: int = (
        10  # observations a percentile needs (and 1 / (1 - q): p95 20, p99 100, pooled over 3 points)
    )
    recover: int = 2  # normal points in a row that end an episode
    memory_gain: float = 0.1  # memory: this far above the highest value of the baseline ...
    memory_points: int = 30  # ... once the baseline holds this many points (start-up is not a leak)
    persist: int = 2  # points in a row that must show the effect before an onset (not one blip)


class ColdStart:
    """The cold-start detector (see the module docstring); implements :class:`.scoring.Detector`."""

    name = "coldstart"

    def __init__(self, params: ColdStartParams | None = None):
        self.p = params or ColdStartParams()
        self.z = float(stats.norm.isf(self.p.alpha))
        self.index: dict[int, int] = {}  # series id -> row
        self.ids: list[int] = []  # row -> series id
        h = self.p.history
        self.ring = {c: np.full((0, h), np.nan) for c in _COLS}
        self.normal = np.zeros((0, h), dtype=bool)  # slot belongs to the baseline
        self.seen = np.zeros(0, dtype=np.int64)
        self.calm = np.full(0, -1, dtype=np.int64)  # -1: not firing, else normal points in a row
        self.length = np.zeros(0, dtype=np.int64)  # points in the current episode
        self.run = np.zeros(0, dtype=np.int64)  # points in a row that showed the effect

    # -- state ---------------------------------------------------------------------------------
    def _rows(self, ids: np.ndarray) -> np.ndarray:
        fresh = [int(s) for s in dict.fromkeys(ids.tolist()) if int(s) not in self.index]
        if fresh:
            base = len(self.index)
            self.index.update({s: base + i for i, s in enumerate(fresh)})
            self.ids.extend(fresh)
            h, m = self.p.history, len(fresh)
            for c in _COLS:
                self.ring[c] = np.vstack([self.ring[c], np.full((m, h), np.nan)])
            self.normal = np.vstack([self.normal, np.zeros((m, h), dtype=bool)])
            self.seen = np.concatenate([self.seen, np.zeros(m, dtype=np.int64)])
            self.calm = np.concatenate([self.calm, np.full(m, -1, dtype=np.int64)])
            self.length = np.concatenate([self.length, np.zeros(m, dtype=np.int64)])
            self.run = np.concatenate([self.run, np.zeros(m, dtype=np.int64)])
        return np.fromiter((self.index[int(s)] for s in ids), dtype=np.int64, count=len(ids))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"ring_{c}": a for c, a in self.ring.items()}
        arrays.update(ids=np.array(self.ids, dtype=np.int64), normal=self.normal, seen=self.seen,
                      calm=self.calm, length=self.length, run=self.run)  # fmt: skip
        return {"params": asdict(self.p)}, arrays

    def load(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if "ids" not in arrays:
            return
        self.ids = [int(s) for s in arrays["ids"]]
        self.index = {s: i for i, s in enumerate(self.ids)}
        self.ring = {c: arrays[f"ring_{c}"].astype(float) for c in _COLS}
        self.normal = arrays["normal"].astype(bool)
        self.seen, self.calm = arrays["seen"].astype(np.int64), arrays["calm"].astype(np.int64)
        self.length = arrays["length"].astype(np.int64)
        self.run = arrays["run"].astype(np.int64) if "run" in arrays else np.zeros_like(self.length)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, points: pd.DataFrame) -> Result:
        out = Result()
        if points.empty:
            return out
        fam = points["family"].to_numpy(str)
        mine = np.isin(fam, FAMILIES)
        if not mine.any():
            return out
        sel = np.flatnonzero(mine)
        ids = points["series_id"].to_numpy(np.int64)[sel]
        rows = self._rows(ids)
        cols = {"v": "value", "n": "n", "k": "k", "dt": "dt"}
        data = {c: points[src].to_numpy(float)[sel] for c, src in cols.items()}
        names = points["name"].to_numpy(str)[sel] if "name" in points else np.full(len(sel), "")
        data["q"] = np.fromiter((quantile_level(x) for x in names), float, len(sel))
        units = points["unit"].to_numpy(str)[sel] if "unit" in points else np.full(len(sel), "")
        data["unit_ms"] = np.fromiter((MS_PER.get(u, np.nan) for u in units), float, len(sel))
        data["bytes"] = np.isin(units, ("By", ""))  # memory gauges in bytes (or no unit given)
        fam, ts = fam[sel], points["ts"].to_numpy(np.int64)[sel]
        # rank of each point among its series' points in this batch: round r judges every r-th point
        order = np.argsort(rows, kind="stable")
        rank = np.empty(len(rows), dtype=np.int64)
        _, start, counts = np.unique(rows[order], return_index=True, return_counts=True)
        rank[order] = np.arange(len(rows)) - np.repeat(start, counts)
        for r in range(int(rank.max()) + 1):
            pts = np.flatnonzero(rank == r)
            self._round(pts, rows[pts], fam[pts], {c: a[pts] for c, a in data.items()}, sel, ts[pts], out)
        out.onsets.sort(key=lambda f: f.row)
        return out

    def _round(self, pts, rr, fam, cur, sel, ts, out: Result) -> None:
        p = self.p
        firing = self.calm[rr] >= 0
        # series past the warm-up are the ensemble's, unless an episode of ours is still open or
        # its effect began before the warm-up ended (the ensemble leaves such a stretch to us: see
        # EnsembleParams.handover); memory is ours for good (a leak is judged against the recent
        # high), and so is lost traffic: a promotion's surge teaches the ensemble's calibration that
        # large moves are routine, and for hours after it an 80 % drop would not be rare enough there
        memory = fam == "memory"
        forever = memory | (fam == "traffic")
        live = (self.seen[rr] < p.warmup) | firing | (self.run[rr] > 0) | forever
        flagged = np.zeros(len(rr), dtype=bool)
        normal_now = np.ones(len(rr), dtype=bool)
        found: dict[int, tuple] = {}
        ready = live & (self.normal[rr].sum(axis=1) >= p.min_points)
        for family, test in (
            ("traffic", self._traffic),
            ("ratio", self._ratio),
            ("latency", self._latency),
            ("memory", self._memory),
        ):
            j = np.flatnonzero(ready & (fam == family))
            if not len(j):
                continue
            bad, effect, details = test(rr[j], {c: a[j] for c, a in cur.items()})
            flagged[j] = bad
            normal_now[j] = ~effect
            for i, d in zip(j[bad], details, strict=True):
                found[int(i)] = d
        self.run[rr] = np.where(normal_now, 0, self.run[rr] + 1)
        for i in np.flatnonzero(live):
            s = int(rr[i])
            if self.calm[s] < 0:
                # a leak's effect is already four points of growth: it needs no more persistence
                if flagged[i] and self.run[s] >= (1 if memory[i] else p.persist):
                    self.calm[s], self.length[s] = 0, 0
                    comp, expected, pval, text = found[int(i)]
                    out.onsets.append(Finding(int(sel[pts[i]]), score_of(pval), float(expected), comp, text))
            else:
                self.calm[s] = 0 if not normal_now[i] else self.calm[s] + 1
                self.length[s] += 1
                if self.calm[s] >= p.recover:
                    self.calm[s] = -1
                elif self.length[s] >= p.history:  # a lasting change: the new normal
                    self.calm[s] = -1
                    self.normal[s] = np.isfinite(self.ring["v"][s])
            if self.calm[s] >= 0:
                out.firing[self.ids[s]] = int(ts[i])
        # record the points (warm series that are not firing are no longer kept)
        keep = live
        slot = self.seen[rr] % p.history
        for c in _COLS:
            self.ring[c][rr[keep], slot[keep]] = cur[c][keep]
        # a point that shows the effect without (yet) the evidence stays out of the baseline too,
        # as long as half the baseline is left (a lasting small change is learnt, not frozen out)
        kept = self.normal[rr].sum(axis=1)
        suspect = ~normal_now & (kept >= p.min_points) & (2 * kept >= np.minimum(self.seen[rr], p.history))
        self.normal[rr[keep], slot[keep]] = ((self.calm[rr] < 0) & ~flagged & ~suspect)[keep]
        self.seen[rr] += 1
        done = ~live
        if done.any():
            for c in _COLS:
                self.ring[c][rr[done]] = np.nan
            self.normal[rr[done]] = False

    def _baseline(self, rr: np.ndarray, col: str) -> np.ndarray:
        """The baseline slots' values of column ``col`` (NaN elsewhere), excluding the newest
        ``RECENT - 1`` points, which the window test pools with the current one."""
        a = np.where(self.normal[rr], self.ring[col][rr], np.nan)
        recent = (self.seen[rr][:, None] - np.arange(1, RECENT)[None, :]) % self.p.history
        ok = self.seen[rr][:, None] >= np.arange(1, RECENT)[None, :]
        a[np.repeat(np.arange(len(rr)), RECENT - 1)[ok.ravel()], recent[ok]] = np.nan
        return a

    def _recent(self, rr: np.ndarray, col: str, current: np.ndarray, length: int = 3) -> np.ndarray:
        """Sum of ``col`` over the current point and the ``length - 1`` before it."""
        idx = (self.seen[rr][:, None] - np.arange(1, length)[None, :]) % self.p.history
        prev = self.ring[col][rr[:, None], idx]
        prev = np.where(self.seen[rr][:, None] >= np.arange(1, length)[None, :], prev, np.nan)
        full = np.isfinite(prev).all(axis=1)
        return np.where(full, current + np.nansum(prev, axis=1), np.nan)

    # -- the tests: each returns (flagged, effect still present, details of the flagged) ------
    def _traffic(self, rr, cur):
        p = self.p
        c, e = self._baseline(rr, "n"), self._baseline(rr, "dt")
        ok = np.isfinite(c) & np.isfinite(e) & (e > 0)
        csum, esum = np.where(ok, c, 0).sum(axis=1), np.where(ok, e, 0).sum(axis=1)
        lam = (0.5 + csum) / np.maximum(esum, 1e-9)
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.nanpercentile(np.where(ok, c / e, np.nan), 25, axis=1)
            disp = _dispersion(np.where(ok, (c - lam[:, None] * e) ** 2 / (lam[:, None] * e), np.nan))
        low = np.minimum(level, lam) * p.drop
        flagged = np.zeros(len(rr), dtype=bool)
        pvals = np.ones(len(rr))
        details: list[tuple] = []
        windows = [(cur["n"], cur["dt"])]
        windows += [(self._recent(rr, "n", cur["n"], w), self._recent(rr, "dt", cur["dt"], w)) for w in POOLS]
        effect = np.zeros(len(rr), dtype=bool)
        for w, (cnt, exp) in zip((1, *POOLS), windows, strict=True):
            with np.errstate(invalid="ignore", divide="ignore"):
                cand = np.isfinite(cnt) & (exp > 0) & (cnt / exp < low)
            if w <= EFFECT_POOL:
                effect |= cand
            if cand.any():
                mu = lam[cand] * exp[cand]
                var = disp[cand] * mu * (1 + exp[cand] / np.maximum(esum[cand], 1e-9))
                pv = _nb_cdf(cnt[cand], mu, var)
                pvals[cand] = np.minimum(pvals[cand], pv * len(windows))
        flagged = pvals < p.alpha
        for i in np.flatnonzero(flagged):
            rate = cur["n"][i] / cur["dt"][i]
            text = (f"throughput drop: {rate:.3g}/s, usually ~{lam[i]:.3g}/s "
                    f"({_p(pvals[i])}, judged on {int(ok[i].sum())} points)")  # fmt: skip
            details.append(("drop", lam[i], pvals[i], text))
        return flagged, effect, details

    def _ratio(self, rr, cur):
        p = self.p
        k, n = self._baseline(rr, "k"), self._baseline(rr, "n")
        ok = np.isfinite(k) & np.isfinite(n) & (n > 0)
        ksum, nsum = np.where(ok, k, 0).sum(axis=1), np.where(ok, n, 0).sum(axis=1)
        share = (ksum + 0.5) / (nsum + 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            chi = np.where(
                ok, (k - share[:, None] * n) ** 2 / (n * share[:, None] * (1 - share[:, None])), np.nan
            )
        disp = _dispersion(chi)
        a, b = 0.5 + ksum / disp, 0.5 + (nsum - ksum) / disp
        pvals = np.ones(len(rr))
        effect = np.zeros(len(rr), dtype=bool)
        windows = [(cur["k"], cur["n"])]
        windows += [(self._recent(rr, "k", cur["k"], w), self._recent(rr, "n", cur["n"], w)) for w in POOLS]
        for w, (kk, nn) in zip((1, *POOLS), windows, strict=True):
            with np.errstate(invalid="ignore", divide="ignore"):
                obs = kk / nn
                big = (
                    np.isfinite(obs)
                    & (nn > 0)
                    & (obs >= share + p.ratio_floor)
                    & (obs >= p.ratio_gain * share)
                )
            if w <= EFFECT_POOL:
                effect |= big
            cand = big & (kk >= p.min_errors)
            if cand.any():
                nd = np.maximum(np.round(nn[cand] / disp[cand]), 1)
                kd = np.minimum(np.round(kk[cand] / disp[cand]), nd)
                pv = stats.betabinom.sf(kd - 1, nd, a[cand], b[cand])
                pvals[cand] = np.minimum(pvals[cand], pv * len(windows))
        flagged = (pvals < p.alpha) & (cur["n"] > 0)  # a bucket without records is no onset
        details = []
        for i in np.flatnonzero(flagged):
            text = (f"error share up: {cur['k'][i]:.0f} of {cur['n'][i]:.0f} ({cur['k'][i] / cur['n'][i]:.1%}), "
                    f"usually {share[i]:.2%} of {nsum[i]:.0f} ({_p(pvals[i])})")  # fmt: skip
            details.append(("errors", share[i], pvals[i], text))
        return flagged, effect, details

    def _latency(self, rr, cur):
        p = self.p
        q = cur["q"]
        floor = p.latency_floor_ms / cur["unit_ms"]  # the smallest rise worth an incident, in the unit
        need = np.maximum(p.min_n, np.ceil(1.0 / np.maximum(1.0 - q, 1e-3)))  # p99: 100 observations
        gain_min = np.log(np.where(q >= 0.99, p.tail_gain, p.latency_gain))
        v, n = self._baseline(rr, "v"), self._baseline(rr, "n")
        ok = np.isfinite(v) & (v > 0)  # thin points too: their scatter is what a thin point may do
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lv = np.where(ok, np.log(np.where(ok, v, 1.0)), np.nan)
            med = np.nanmedian(lv, axis=1)
            # MAD, but not below what the 10-90 % range says: percentiles interpolated in histogram
            # buckets sit on the same value for most points and hop between a few others
            sd = np.fmax(
                np.nanmedian(np.abs(lv - med[:, None]), axis=1) * 1.4826,
                (np.nanpercentile(lv, 90, axis=1) - np.nanpercentile(lv, 10, axis=1)) / 2.563,
            )
            usual_n = np.nanmedian(np.where(ok, n, np.nan), axis=1)
        m = ok.sum(axis=1)
        sd = np.maximum(np.nan_to_num(sd), 0.05) * (1 + 2 / np.sqrt(np.maximum(m, 1)))  # few points: wider
        # the point alone, and the median of the last EFFECT_POOL points with their observations pooled
        idx = (self.seen[rr][:, None] - np.arange(1, EFFECT_POOL)[None, :]) % p.history
        prev = np.where(
            self.seen[rr][:, None] >= np.arange(1, EFFECT_POOL)[None, :],
            self.ring["v"][rr[:, None], idx],
            np.nan,
        )
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            recent = np.nanmedian(np.log(np.column_stack([cur["v"], prev])), axis=1)
        windows = [(np.log(cur["v"]), cur["n"]), (recent, self._recent(rr, "n", cur["n"], EFFECT_POOL))]
        pvals, gains = np.ones(len(rr)), np.full(len(rr), -np.inf)
        pooled = np.zeros(len(rr), dtype=bool)  # the pooled window carries the evidence
        for w, (stat, nn) in enumerate(windows):
            counted = np.isfinite(nn)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                thin = np.where(counted & np.isfinite(usual_n), np.sqrt(np.maximum(usual_n / nn, 1.0)), 1.0)
                gain = stat - med
                z = gain / (sd * thin)
                rise = np.exp(stat) - np.exp(med)
            judged = np.isfinite(z) & (~counted | (nn >= need)) & (m >= p.min_points) & ~(rise < floor)
            hit = judged & (gain >= gain_min)
            pv = np.where(hit, stats.norm.sf(np.where(hit, z, 0)) * len(windows), 1.0)
            pooled = np.where(pv < pvals, w > 0, pooled)
            pvals = np.minimum(pvals, pv)
            gains = np.where(judged, np.maximum(gains, gain), gains)
        flagged = pvals < p.alpha
        effect = gains >= gain_min
        details = []
        for i in np.flatnonzero(flagged):
            usual, x, nx = math.exp(med[i]), cur["v"][i], cur["n"][i]
            obs = f" ({nx:.0f} observations)" if np.isfinite(nx) else ""
            if pooled[i]:  # the point alone may be back down: say what carried the evidence
                x = math.exp(recent[i])
                text = f"latency up: {x:.4g}, the median of the last {EFFECT_POOL} points, is {x / usual:.1f}x the usual {usual:.4g}"
            else:
                text = f"latency up: {x:.4g} is {x / usual:.1f}x the usual {usual:.4g}{obs}"
            details.append(("latency", usual, float(pvals[i]), text))
        return flagged, effect, details

    def _memory(self, rr, cur):
        p = self.p
        v = self._baseline(rr, "v")
        m = np.isfinite(v).sum(axis=1)
        high, med, sd = np.full(len(rr), np.nan), np.full(len(rr), np.nan), np.full(len(rr), np.nan)
        j = np.flatnonzero(m > 0)  # numpy warns on rows without a value
        if len(j):
            high[j], med[j] = np.nanmax(v[j], axis=1), np.nanmedian(v[j], axis=1)
            mad = np.nanmedian(np.abs(v[j] - med[j, None]), axis=1)
            sd[j] = np.fmax(mad * 1.4826, 0.01 * np.abs(med[j]))
        prev = [
            np.where(self.seen[rr] >= k, self.ring["v"][rr, (self.seen[rr] - k) % p.history], np.nan)
            for k in (1, 2, 3)
        ]
        x = cur["v"]
        with np.errstate(invalid="ignore", divide="ignore"):
            # above the recent high and growing over the last three buckets (a step up is not a leak)
            growing = (x > prev[0]) & (prev[0] > prev[1]) & (prev[1] > prev[2])
            effect = (m >= p.memory_points) & (x > high * (1 + p.memory_gain)) & growing
            pvals = np.where(effect, stats.norm.sf((x - med) / sd), 1.0)
        flagged = effect & (pvals < p.alpha)
        details = []
        for i in np.flatnonzero(flagged):
            size = _size if cur["bytes"][i] else (lambda b: f"{b:.4g}")
            text = (f"memory rising: {size(x[i])}, {x[i] / high[i]:.2f}x its recent high of {size(high[i])} "
                    f"({m[i]} points), and still growing ({_p(pvals[i])})")  # fmt: skip
            details.append(("memory", med[i], float(pvals[i]), text))
        return flagged, effect, details


def _size(b: float) -> str:
    """Bytes as people read them (memory gauges are in bytes).

    >>> _size(183.3e6), _size(2.5e9), _size(512)
    ('183 MB', '2.5 GB', '512 B')
    """
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(b) >= f:
            return f"{b / f:.3g} {unit}"
    return f"{b:.0f} B"


def quantile_level(name: str) -> float:
    """The quantile a percentile series reports, from its name (0.5 when it does not say).

    >>> quantile_level("red.p99"), quantile_level("http.server.request.duration:p95"), quantile_level("rt:q0.9")
    (0.99, 0.95, 0.9)
    """
    tail = name.rsplit(":", 1)[-1] if ":" in name else name.rsplit(".", 1)[-1]
    try:
        if tail[:1] == "p" and tail[1:].isdigit():
            return int(tail[1:]) / 100
        if tail[:1] == "q":
            return float(tail[1:])
    except ValueError:
        pass
    return 0.5


def _p(p: float) -> str:
    return f"p = {p:.1g}" if p >= 1e-12 else "p < 1e-12"


def _dispersion(chi2: np.ndarray) -> np.ndarray:
    """Over-dispersion per row from squared Pearson residuals (NaN where absent), robustly: their
    median over the median of a chi-square with one degree of freedom, at least 1, so one earlier
    outlier does not make every later burst look ordinary."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.maximum(1.0, np.nan_to_num(np.nanmedian(chi2, axis=1) / CHI2_1_MEDIAN, nan=1.0))


def _nb_cdf(count: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """P(X <= count) for a count of this mean and variance: negative binomial when
    over-dispersed, Poisson otherwise."""
    over = var > mean * (1 + 1e-9)
    out = stats.poisson.cdf(count, mean)
    if over.any():
        r = mean[over] ** 2 / (var[over] - mean[over])
        out[over] = stats.nbinom.cdf(count[over], r, r / (r + mean[over]))
    return out
