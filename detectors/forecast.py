"""Predictive mode: time until a saturation-type series (disk, memory, queue depth, pool usage)
crosses its limit, with an uncertainty band, vectorised over series.

The recent trend is a least-squares line over the last ``window`` points of each series; the band
comes from the slope's standard error combined with how much the recent half's slope disagrees,
times ``z``. ``z`` is split-conformal: the 90 % quantile of how far the slope that really led to the
crossing was from the fitted one, in units of that spread, over simulated fill-ups with drifting
rates (``conformal_z``), so the band is an honest 90 % band rather than a nominal 3-sigma one.
``python -m forewarn.detectors.evaluate --forecast`` backtests
the coverage and lead time on other seeds and prints the figures quoted in docs/benchmarks.md.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import bottleneck as bn
import numpy as np


def human_duration(seconds: float) -> str:
    """``3 h 10 min`` style durations.

    >>> human_duration(11400), human_duration(95), human_duration(3 * 86400 + 7200)
    ('3 h 10 min', '2 min', '3 d 2 h')
    """
    if not math.isfinite(seconds):
        return "never"
    m = max(1, round(seconds / 60))
    d, rem = divmod(m, 1440)
    h, mi = divmod(rem, 60)
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {mi} min" if mi else f"{h} h"
    return f"{mi} min"


@dataclass(frozen=True)
class SaturationForecast:
    """Time to the limit for one series: the estimate and its band, in seconds (inf = not heading there)."""

    series_id: str
    eta_s: float
    eta_low_s: float
    eta_high_s: float
    current: float
    limit: float
    slope_per_s: float
    span_s: float = math.nan  # how long a stretch the trend was fitted on (forecast_recent)

    def text(self, what: str | None = None) -> str:
        """``disk /data full in ~3 h 10 min (2 h 50 min – 3 h 35 min)``"""
        name = what or self.series_id
        if not math.isfinite(self.eta_s):
            return f"{name}: not approaching its limit {self.limit:g}"
        if self.eta_s <= 0:
            return f"{name}: at or above its limit {self.limit:g} ({self.current:g})"
        return (
            f"{name} full in ~{human_duration(self.eta_s)} "
            f"({human_duration(self.eta_low_s)} – {human_duration(self.eta_high_s)})"
        )


# band multiplier: ``conformal_z(0.9, 2000, seed=0)`` (861 simulated fill-ups), i.e. split-conformal
# calibration of the spread on the forecaster's own errors, so the band is a 90 % band; the
# reported coverage comes from other seeds
CONFORMAL_Z = 4.45


class SaturationForecaster:
    """Forecast time-to-limit for many series from their recent points.

    >>> t = np.arange(0, 3600, 60.0)
    >>> used = 50 + t / 3600 * 10  # +10 percentage points per hour
    >>> f = SaturationForecaster(limit=100.0).forecast(["disk /data"], t[None, :], used[None, :])[0]
    >>> f.text()
    'disk /data full in ~4 h 1 min (4 h 1 min – 4 h 1 min)'
    """

    def __init__(
        self, limit: float, window: int = 60, z: float = CONFORMAL_Z, warn_within_s: float = 6 * 3600
    ) -> None:
        if window < 3:
            raise ValueError("window must be at least 3 points")
        self.limit = float(limit)
        self.window = window
        self.z = z
        self.warn_within_s = warn_within_s

    def forecast(
        self,
        series_ids: list[str],
        timestamps: np.ndarray,
        values: np.ndarray,
        z: np.ndarray | None = None,
    ) -> list[SaturationForecast]:
        """``timestamps``/``values`` shaped (series, points), oldest first; uses the last ``window``
        points. ``z`` (per series, e.g. from ``own_z``) replaces the band multiplier."""
        slope, now, spread, n = self._fit(timestamps, values)
        zz = self.z if z is None else np.asarray(z, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = self.limit - now
            eta = np.where(slope > 0, gap / slope, np.inf)
            fast, slow = slope + zz * spread, slope - zz * spread
            low = np.where(fast > 0, gap / fast, np.inf)
            high = np.where(slow > 0, gap / slow, np.inf)
        eta = np.where(gap <= 0, 0.0, eta)
        out = []
        for i, sid in enumerate(series_ids):
            if n[i] < 3 or not np.isfinite(slope[i]):
                out.append(
                    SaturationForecast(sid, math.inf, math.inf, math.inf, float("nan"), self.limit, 0.0)
                )
                continue
            e = float(eta[i])
            lo, hi = (0.0, 0.0) if e == 0 else (float(low[i]), float(high[i]))
            out.append(SaturationForecast(sid, e, lo, hi, float(now[i]), self.limit, float(slope[i])))
        return out

    def own_z(
        self, timestamps: np.ndarray, values: np.ndarray, coverage: float = 0.9, min_scores: int = 20
    ) -> np.ndarray:
        """Per-series band multiplier from the forecaster's own past errors on that series (online
        split-conformal): at origins every ``window // 4`` points of the history, the fitted rate is
        compared with the rate that really led to the value ``window / 2``, ``window`` and
        ``2 * window`` points later, in units of the spread; the finite-sample ``coverage`` quantile
        of those scores. Series with fewer than ``min_scores`` scores keep ``self.z``.

        >>> t = np.arange(600) * 60.0
        >>> y = 20 + 0.01 * np.arange(600) + np.random.default_rng(0).normal(0, 0.2, (2, 600))
        >>> y[1, 300:] += 0.02 * np.arange(300)  # the rate changed once: the band must widen
        >>> z = SaturationForecaster(100.0).own_z(np.stack([t, t]), y)
        >>> bool(z[1] > z[0])
        True
        """
        t = np.asarray(timestamps, dtype=np.float64)
        y = np.asarray(values, dtype=np.float64)
        w = self.window
        horizons = (max(1, w // 2), w, 2 * w)
        origins = np.arange(w - 1, t.shape[1] - horizons[0], max(1, w // 4))
        out = np.full(t.shape[0], self.z)
        if not len(origins):
            return out
        idx = origins[:, None] + np.arange(1 - w, 1)[None, :]
        s, o = t.shape[0], len(origins)
        slope, now, spread, _ = self._fit(t[:, idx].reshape(s * o, w), y[:, idx].reshape(s * o, w))
        slope, now, spread = slope.reshape(s, o), now.reshape(s, o), spread.reshape(s, o)
        scores = []
        for h in horizons:
            later = np.minimum(origins + h, t.shape[1] - 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                needed = (y[:, later] - now) / (t[:, later] - t[:, origins])
                r = np.abs(needed - slope) / spread
            scores.append(np.where(origins + h < t.shape[1], r, np.nan))
        r = np.sort(np.concatenate(scores, axis=1), axis=1)  # NaN last
        valid = np.isfinite(r).sum(axis=1)
        k = np.clip(np.ceil((valid + 1) * coverage).astype(np.int64) - 1, 0, r.shape[1] - 1)
        q = np.take_along_axis(r, k[:, None], axis=1)[:, 0]
        return np.where((valid >= min_scores) & np.isfinite(q), q, out)

    def _fit(self, timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """Slope, current level, the slope's spread (standard error widened by how much the recent
        half's slope disagrees: the rate itself drifts) and points used, over the last ``window``."""
        t = np.asarray(timestamps, dtype=np.float64)[:, -self.window :]
        y = np.asarray(values, dtype=np.float64)[:, -self.window :]
        ok = np.isfinite(t) & np.isfinite(y)
        tt = np.where(ok, t - t[:, -1:], 0.0)
        slope, now, se = _line(tt, y, ok)
        half = self.window // 2
        slope_recent, _, _ = _line(tt[:, -half:], y[:, -half:], ok[:, -half:])
        return slope, now, np.sqrt(se**2 + np.nan_to_num(slope_recent - slope) ** 2), ok.sum(axis=1)

    def forecast_recent(
        self, series_ids: list[str], timestamps: np.ndarray, values: np.ndarray, alpha: float = 1e-3
    ) -> list[SaturationForecast]:
        """Time to the limit from the *current* trend: each series is fitted over the longest recent
        stretch (of at least 3 points, within the last ``window``) that is still one straight line,
        so a disk that started filling a minute ago is not averaged with the flat hour before it.
        Stretches grow while every point stays within a few noise levels of the stretch's line (the
        noise comes from the point-to-point differences, robustly, so a trend does not count as
        noise; a stretch whose own differences scatter more, like a fill written in chunks, is
        judged by its own noise). The band is the slope's ``1 - alpha`` Student-t interval, with
        the degrees of freedom of the noise level's estimate (all the window's points: three points
        of a clean fill are enough; the stretch's own when its noise is its own) and an error at
        least what that noise implies; a series whose rise is not
        significant at that level is not heading to its limit (``eta_s`` infinite). Fewer than six
        points say nothing yet (unless the last is at the limit). A fill that began between the
        last reports, too recent for three points on its line, is fitted on the last two (see
        :meth:`_bend`).

        >>> t = np.arange(0.0, 600.0, 10.0)
        >>> v = np.where(t < 480, 0.6, 0.6 + (t - 480) * 0.4 / 360)  # filling for the last 2 minutes
        >>> f = SaturationForecaster(limit=1.0).forecast_recent(["disk"], t[None, :], v[None, :])[0]
        >>> round(f.eta_s), f.text("disk /")
        (250, 'disk / full in ~4 min (4 min – 4 min)')
        >>> SaturationForecaster(limit=1.0).forecast(["disk"], t[None, :], v[None, :])[0].eta_s > 1000
        True
        """
        t = np.asarray(timestamps, dtype=np.float64)[:, -self.window :]
        y = np.asarray(values, dtype=np.float64)[:, -self.window :]
        ok = np.isfinite(t) & np.isfinite(y)
        tt = np.where(ok, t - t[:, -1:], 0.0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: short histories
            return self._recent(series_ids, tt, y, ok, alpha)

    def _recent(self, series_ids, tt, y, ok, alpha) -> list[SaturationForecast]:
        from scipy.stats import t as student

        s, n = tt.shape
        noise = _noise(y)
        window_dof = np.maximum(ok.sum(axis=1) - 2, 1)
        best = np.full(
            (s, 4), np.nan
        )  # slope, level, slope error, degrees of freedom of the longest straight stretch
        best_n, span = np.zeros(s), np.full(s, np.nan)
        alive = np.ones(s, dtype=bool)  # every shorter stretch was straight too
        for length in _LENGTHS:
            if length > n:
                break
            okl = ok[:, -length:]
            sl, lv, se = _line(tt[:, -length:], y[:, -length:], okl)
            m = okl.sum(axis=1)
            # an irregular fill (writes in chunks) is noisier than the flat past: its own differences
            # say how much, with the stretch's own degrees of freedom
            local = _noise(y[:, -length:])
            own = local > noise
            sigma = np.fmax(noise, local)
            with np.errstate(invalid="ignore"):
                resid = np.where(okl, y[:, -length:] - (lv[:, None] + sl[:, None] * tt[:, -length:]), 0.0)
                tol = (3.0 + np.sqrt(2 * np.log(np.maximum(m, 2)))) * sigma
                straight = np.abs(resid).max(axis=1) <= tol
                dt = np.where(
                    okl, tt[:, -length:] - tt[:, -length:].sum(axis=1, keepdims=True) / m[:, None], 0
                )
                se = np.fmax(se, sigma / np.sqrt((dt**2).sum(axis=1)))
            dof = np.where(own, np.maximum(m - 2, 1), window_dof)
            take = alive & straight & (m >= 3) & np.isfinite(sl)
            alive &= straight | (m < 3)
            best[take] = np.column_stack([sl, lv, se, dof])[take]
            best_n[take] = m[take]
            span[take] = -np.where(okl, tt[:, -length:], 0.0).min(axis=1)[take]
            if not alive.any():
                break
        if n >= 3:
            tcrit = student.isf(alpha, np.nan_to_num(best[:, 3], nan=1.0))
            weak = (best_n == 0) | ((best[:, 3] < window_dof) & ~(best[:, 0] - tcrit * best[:, 2] > 0))
            self._bend(tt[:, -3:], y[:, -3:], ok[:, -3:], noise, window_dof, weak, best, best_n, span)
        slope, now, se = best[:, 0], best[:, 1], best[:, 2]
        tcrit = student.isf(alpha, np.nan_to_num(best[:, 3], nan=1.0))
        last = np.array([r[k][-1] if k.any() else np.nan for r, k in zip(y, ok, strict=True)])
        reached = last >= self.limit  # at the limit now, whatever the trend
        now = np.where(reached, last, now)
        best_n = np.where(reached, np.maximum(best_n, 1), np.where(ok.sum(axis=1) >= _MIN_HISTORY, best_n, 0))
        gap = self.limit - now
        out = []
        for i, sid in enumerate(series_ids):
            if not best_n[i]:
                out.append(
                    SaturationForecast(sid, math.inf, math.inf, math.inf, float("nan"), self.limit, 0.0)
                )
                continue
            lo_slope, hi_slope = slope[i] - tcrit[i] * se[i], slope[i] + tcrit[i] * se[i]
            if gap[i] <= 0:
                e = lo = hi = 0.0
            elif lo_slope <= 0:  # not significantly rising
                e = lo = hi = math.inf
            else:
                e, lo, hi = gap[i] / slope[i], gap[i] / hi_slope, gap[i] / lo_slope
            out.append(SaturationForecast(sid, float(e), float(lo), float(hi), float(now[i]), self.limit,
                                          float(slope[i]), float(span[i])))  # fmt: skip
        return out

    @staticmethod
    def _bend(t, y, ok, noise, dof, weak, best, best_n, span) -> None:
        """A fill that began between the last reports (in place, on the ``weak`` rows: no
        straight stretch, or only one judged by its own scatter that is not significant; the
        bend makes a short stretch scatter). At a point a minute, the SDKs' default, three points after
        the bend take three minutes, and the bend's own point is off their line by how far into
        its interval the fill began. So the last two points give the line when the point before
        them lies on it or above it by at most one step of it (the flat past met the new slope
        in between) and the middle point already rose above it, judged by the past's noise. A
        step up that stops has a flat last two, and one that was just made rose only once; a
        line of two points is trusted for only ``EXTRAPOLATION`` times its one interval (see
        :mod:`.saturation`), so at a point every few seconds it warns only of a limit seconds
        away."""
        sl, lv, _ = _line(t[:, 1:], y[:, 1:], ok[:, 1:])
        with np.errstate(invalid="ignore"):
            step = sl * (t[:, 1] - t[:, 0])
            off = y[:, 0] - (lv + sl * t[:, 0])
            tol = 3.0 * noise
            rose = y[:, 1] - y[:, 0] > np.sqrt(2.0) * tol  # the fill was under way at the middle point
            bend = weak & ok.all(axis=1) & rose & (sl > 0) & (off >= -tol) & (off <= step + tol)
            se = noise * np.sqrt(2.0) / np.abs(t[:, 2] - t[:, 1])
        best[bend] = np.column_stack([sl, lv, se, dof])[bend]
        best_n[bend] = 2
        span[bend] = -t[bend, 1]

    def warnings(self, forecasts: list[SaturationForecast]) -> list[SaturationForecast]:
        """The forecasts that should raise an early warning: the limit is expected within ``warn_within_s``."""
        return [f for f in forecasts if f.eta_s <= self.warn_within_s]


_MIN_HISTORY = 6  # points before a trend is trusted (the noise level needs a few differences)
_LENGTHS = (3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128)  # stretches tried, in points


def _noise(y: np.ndarray) -> np.ndarray:
    """Robust noise level per row from point-to-point differences (a steady trend shifts them all
    alike, so it does not count), floored at a billionth of the level and, for values that move
    both ways in steps of a quantum (an integer percentage), at half that quantum.

    >>> _noise(np.array([[60.0, 60, 60, 61, 60, 60, 60, 60, 61, 60], [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10]]))
    array([5.e-01, 1.e-08])
    """
    with np.errstate(invalid="ignore"):
        d = np.diff(y, axis=1)
        # rows without a finite difference yet stay NaN (numpy would warn on them, and a filter
        # of warnings is process-wide state that the flows' threads would race on)
        has = np.isfinite(d).any(axis=1)
        mad = np.full(len(d), np.nan)
        if has.any():
            dh = d[has]
            # bottleneck's median: numpy's nanmedian goes through masked arrays on short rows, and
            # this runs for every stretch length of every forecast (most of a score tick's forecast)
            mad[has] = bn.nanmedian(np.abs(dh - bn.nanmedian(dh, axis=1)[:, None]), axis=1)
        floor = 1e-9 * np.nanmax(np.abs(y), axis=1, initial=0.0)
        steps = np.where(np.isfinite(d) & (d != 0), np.abs(d), np.inf).min(axis=1, initial=np.inf)
        both = (np.nan_to_num(d) > 0).any(axis=1) & (np.nan_to_num(d) < 0).any(axis=1)
    quantum = np.where(both & np.isfinite(steps), steps / 2, 0.0)
    return np.fmax.reduce([np.nan_to_num(mad * 1.4826 / np.sqrt(2)), floor, quantum])


def _line(t: np.ndarray, y: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope, level at t = 0 and the slope's standard error, per row (masked by ``ok``)."""
    n = ok.sum(axis=1)
    tt = np.where(ok, t, 0.0)
    yy = np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = tt.sum(axis=1) / n
        ym = yy.sum(axis=1) / n
        dt = np.where(ok, tt - tm[:, None], 0.0)
        dy = np.where(ok, yy - ym[:, None], 0.0)
        sxx = (dt**2).sum(axis=1)
        slope = (dt * dy).sum(axis=1) / sxx
        resid = np.where(ok, dy - slope[:, None] * dt, 0.0)
        se = np.sqrt((resid**2).sum(axis=1) / np.maximum(n - 2, 1) / sxx)
    return slope, ym - slope * tm, se


def _fill_ups(n_series: int, seed: int) -> list[tuple[np.ndarray, int, int]]:
    """Simulated fill-ups (noisy, drifting fill rate), each with a random forecast moment ``at``
    before the first crossing ``c`` of 100: ``(values, at, c)``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_series):
        n = 2000
        rate = rng.uniform(0.005, 0.05) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))  # drifting fill rate
        noise = rng.normal(0, rng.uniform(0.05, 0.5), n)
        y = rng.uniform(20, 60) + np.cumsum(rate) + noise
        cross = np.flatnonzero(y >= 100.0)
        if not len(cross) or cross[0] < 200:
            continue
        c = int(cross[0])
        out.append((y, int(rng.integers(100, c - 10)), c))
    return out


_STEP = 60.0


def nonconformity(n_series: int = 400, seed: int = 0, window: int = 60) -> np.ndarray:
    """How far the slope that really led to each crossing (gap / true time) was from the fitted
    slope, in units of the forecaster's own spread: split-conformal scores for choosing ``z``."""
    fc = SaturationForecaster(limit=100.0, window=window)
    out = []
    for y, at, c in _fill_ups(n_series, seed):
        t = np.arange(at + 1) * _STEP
        slope, now, spread, _ = fc._fit(t[None, :], y[None, : at + 1])
        needed = (100.0 - now[0]) / ((c - at) * _STEP)
        out.append(abs(needed - slope[0]) / max(float(spread[0]), 1e-300))
    return np.asarray(out)


def conformal_z(coverage: float = 0.9, n_series: int = 400, seed: int = 0) -> float:
    """The band multiplier that covers ``coverage`` of the calibration fill-ups (finite-sample
    corrected quantile of the nonconformity scores).

    >>> round(conformal_z(0.9, n_series=60, seed=5), 1) > 3.0
    True
    """
    r = np.sort(nonconformity(n_series, seed))
    k = min(len(r) - 1, int(np.ceil((len(r) + 1) * coverage)) - 1)
    return float(r[k])


def backtest(n_series: int = 200, seed: int = 0, z: float | None = None) -> dict[str, float]:
    """Forecast simulated fill-ups at random moments before the crossing and compare with when the
    limit was really crossed (never run on the calibration seed 0 when reporting coverage)."""
    fc = SaturationForecaster(limit=100.0, window=60, **({} if z is None else {"z": z}))
    errs, covered, own, warned, leads = [], 0, [], 0, []
    for y, at, c in _fill_ups(n_series, seed):
        t = np.arange(len(y)) * _STEP
        f = fc.forecast(["s"], t[None, : at + 1], y[None, : at + 1])[0]
        truth = (c - at) * _STEP
        errs.append(abs(f.eta_s - truth) / truth)
        covered += f.eta_low_s <= truth <= f.eta_high_s
        z = fc.own_z(t[None, : at + 1], y[None, : at + 1])
        g = fc.forecast(["s"], t[None, : at + 1], y[None, : at + 1], z=z)[0]
        own.append((g.eta_low_s <= truth <= g.eta_high_s, float(z[0])))
        # lead time: the first moment the forecaster warns (6 h horizon) vs the real crossing
        for j in range(100, c, 10):
            if fc.forecast(["s"], t[None, : j + 1], y[None, : j + 1])[0].eta_s <= fc.warn_within_s:
                warned += 1
                leads.append((c - j) * _STEP)
                break
    m = len(errs)
    return {
        "series": m,
        "z": fc.z,
        "median_abs_pct_error": 100 * float(np.median(errs)),
        "p90_abs_pct_error": 100 * float(np.quantile(errs, 0.9)),
        "band_coverage_pct": 100 * covered / m,
        "own_errors_band_coverage_pct": 100 * float(np.mean([hit for hit, _ in own])),
        "own_errors_median_z": float(np.median([z for _, z in own])),
        "warned_before_crossing_pct": 100 * warned / m,
        "median_lead_h": float(np.median(leads)) / 3600 if leads else 0.0,
    }
