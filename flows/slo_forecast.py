"""Error-budget forecast: when the budget of an SLO runs out at the present burn, with a band.

The consumed share of the budget (1 = all of it) is a saturation series heading for its limit
of 1, and the detectors' :class:`SaturationForecaster` fits its line over the last two days of
hourly points (whole days, so a daily cycle of the error ratio averages out) and gives the time to
the limit with its split-conformal band.

Calendar windows are forecast in *event time*: the x axis is the share of the window's traffic
served so far, so the slope is the burn rate itself, free of the daily and weekly cycles of
traffic; the window's traffic still to come is the hour-of-week mean of the history (hour of
day, then the overall mean, while there is less of it), and the same profile turns the share
of traffic at which the budget runs out back into a time. Rolling windows fit the line to the
error ratio over the window ending at each hour.

:func:`backtest` measures the accuracy on generated good/bad streams (``python -m
forewarn.flows.slo_forecast`` prints the figures quoted in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from forewarn.detectors.forecast import SaturationForecaster, human_duration
from forewarn.flows.slo_spec import SLO, TimeWindow

FORECAST_STEP_MS = 3600 * 1000
FORECAST_POINTS = 48  # the forecaster's line: the last two days of hourly budget points


@dataclass
class Forecast:
    """When the budget runs out at the present burn: seconds from now, with a band (inf: never)."""

    eta_s: float
    low_s: float
    high_s: float
    horizon_s: float  # until the window ends (calendar) or the configured horizon (rolling)

    @property
    def warns(self) -> bool:
        return self.eta_s <= self.horizon_s

    def text(self) -> str:
        if not math.isfinite(self.eta_s):
            return "not running out"
        if self.eta_s <= 0:
            return "exhausted"
        return (
            f"in ~{human_duration(self.eta_s)} ({human_duration(self.low_s)} – {human_duration(self.high_s)})"
        )


def budget_series(slo: SLO, ts: np.ndarray, good: np.ndarray, total: np.ndarray, at_ms: int) -> np.ndarray:
    """Budget consumed (1 = all of it) at the end of each hourly point ``ts``.

    Rolling window: the error ratio over the window ending there, over the budget (``ts`` should
    cover one window before the points that matter). Calendar window: the bad events since the
    window began over the budget of the whole window's traffic, projected from the traffic so
    far; it reaches 1 when the window's objective is missed even if no error follows."""
    bad = total - good
    cb, ct = np.cumsum(bad), np.cumsum(total)
    if slo.window.rolling:
        w = slo.window.days * 24
        cb0 = np.concatenate([np.zeros(w), cb])[: len(cb)]
        ct0 = np.concatenate([np.zeros(w), ct])[: len(ct)]
        b, n = cb - cb0, ct - ct0
    else:
        start, end = slo.window.start_ms(at_ms), slo.window.end_ms(at_ms)
        before = ts <= start
        b = cb - (cb[before][-1] if before.any() else 0.0)
        n = ct - (ct[before][-1] if before.any() else 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            n = n * (end - start) / (ts - start)  # the whole window's traffic at the pace so far
        b, n = np.where(before, np.nan, b), np.where(before, np.nan, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, b / (slo.budget * n), np.nan)


def forecast_budget(
    slo: SLO,
    ts: np.ndarray,
    consumed: np.ndarray,
    at_ms: int,
    horizon_s: float,
    window: int = FORECAST_POINTS,
) -> Forecast | None:
    """The detectors' saturation forecaster on the consumed budget (limit 1): its slope is the
    burn rate, its band the uncertainty of that rate. None without enough points."""
    ok = np.isfinite(consumed)
    if ok.sum() < 6:
        return None
    fc = SaturationForecaster(limit=1.0, window=min(window, int(ok.sum())))
    f = fc.forecast([slo.id], (ts[ok] / 1000.0)[None, :], consumed[ok][None, :])[0]
    if not slo.window.rolling:
        horizon_s = max(0.0, (slo.window.end_ms(at_ms) - at_ms) / 1000.0)
    return Forecast(f.eta_s, f.eta_low_s, f.eta_high_s, horizon_s)


def traffic_profile(ts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Expected events per hour of the week (168 values, by UTC hour since the epoch), from hourly
    points ending at ``ts``: the mean of that hour of the week, else of that hour of the day,
    else the overall mean."""
    hour = (np.asarray(ts, dtype=np.int64) - 1) // FORECAST_STEP_MS
    out = np.full(168, float(np.mean(total)) if len(total) else 0.0)
    by_day = np.bincount(hour % 24, weights=total, minlength=24) / np.maximum(
        np.bincount(hour % 24, minlength=24), 1
    )
    seen_day = np.bincount(hour % 24, minlength=24) > 0
    out = np.where(seen_day[np.arange(168) % 24], by_day[np.arange(168) % 24], out)
    n_week = np.bincount(hour % 168, minlength=168)
    by_week = np.bincount(hour % 168, weights=total, minlength=168) / np.maximum(n_week, 1)
    return np.where(n_week > 0, by_week, out)


def forecast_calendar(
    slo: SLO, ts: np.ndarray, good: np.ndarray, total: np.ndarray, at_ms: int, window: int = FORECAST_POINTS
) -> Forecast | None:
    """Event-time forecast of a calendar window (see the module's docstring); ``ts`` are the
    ends of hourly points up to ``at_ms``, history before the window included."""
    start, end = slo.window.start_ms(at_ms), slo.window.end_ms(at_ms)
    horizon_s = max(0.0, (end - at_ms) / 1000.0)
    past = ts <= at_ms
    inside = past & (ts > start)
    seen = np.flatnonzero(past & (total > 0))
    if (inside & (total > 0)).sum() < 6 or not len(seen):
        return None
    since_first = past & (
        np.arange(len(ts)) >= seen[0]
    )  # hours before the service existed are not quiet hours
    profile = traffic_profile(ts[since_first], total[since_first])
    future = np.arange((at_ms // FORECAST_STEP_MS + 1) * FORECAST_STEP_MS, end + 1, FORECAST_STEP_MS)
    expected = profile[((future - 1) // FORECAST_STEP_MS) % 168]
    served = float(total[inside].sum())
    whole = served + float(expected.sum())
    served_hour = total[inside] > 0  # the line goes through the hours that served traffic
    x = (np.cumsum(total[inside]) / whole)[served_hour]  # share of the window's traffic served
    y = (np.cumsum(total[inside] - good[inside]) / (slo.budget * whole))[served_hour]  # of its budget spent
    fc = SaturationForecaster(limit=1.0, window=min(window, len(x)))
    f = fc.forecast([slo.id], x[None, :], y[None, :])[0]
    if f.eta_s == 0:
        return Forecast(0.0, 0.0, 0.0, horizon_s)
    cum = np.cumsum(expected) / whole  # share of traffic served by the end of each future hour

    def when(dx: float) -> float:
        """Seconds from now until a further ``dx`` of the window's traffic is served."""
        if not math.isfinite(dx) or dx > cum[-1] if len(cum) else True:
            return math.inf
        i = int(np.searchsorted(cum, dx))
        before = cum[i - 1] if i > 0 else 0.0
        part = (dx - before) / max(cum[i] - before, 1e-300)
        return ((future[i] - FORECAST_STEP_MS) - at_ms) / 1000.0 + part * FORECAST_STEP_MS / 1000.0

    eta = when(f.eta_s)
    return Forecast(max(0.0, eta), max(0.0, when(f.eta_low_s)), max(0.0, when(f.eta_high_s)), horizon_s)


def forecast_counts(
    slo: SLO, ts: np.ndarray, good: np.ndarray, total: np.ndarray, at_ms: int, horizon_s: float
) -> Forecast | None:
    """The forecast of one SLO from its hourly good/total points (ends ``ts``, up to ``at_ms``)."""
    if not slo.window.rolling:
        return forecast_calendar(slo, ts, good, total, at_ms)
    return forecast_budget(slo, ts, budget_series(slo, ts, good, total, at_ms), at_ms, horizon_s)


def _stream(rng: np.random.Generator, hours: int, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Hourly (good, total) with daily and weekly cycles of traffic, a daily cycle of the error
    ratio, noise, and in half of the streams a change of the burn rate at a random hour."""
    h = np.arange(hours)
    traffic = (
        rng.uniform(2e3, 2e5)
        * (1 + 0.5 * np.sin(2 * np.pi * h / 24))
        * np.where((h // 24) % 7 >= 5, 0.7, 1.0)
    )
    total = rng.poisson(traffic).astype(float)
    burn = rng.uniform(0.3, 2.5) * (1 + 0.4 * np.sin(2 * np.pi * h / 24 + rng.uniform(0, 6.3)))
    burn *= np.exp(rng.normal(0, 0.3, hours))
    if rng.random() < 0.5:
        burn[int(rng.integers(72, hours)) :] *= rng.uniform(0.3, 3.0)
    bad = rng.binomial(total.astype(np.int64), np.clip(burn * budget, 0, 1)).astype(float)
    return total - bad, total


def backtest(n_streams: int = 200, seed: int = 1, objective: float = 0.999) -> dict[str, float]:
    """Forecast each day of generated 30-day calendar windows (from day 3 on) and compare with
    when the budget really ran out: warning precision and recall (runs out before the window
    ends), and for budgets that ran out, the error of the projected time and the band's coverage."""
    rng = np.random.default_rng(seed)
    before, hours = 14 * 24, 30 * 24  # two weeks of history, then the window
    slo = SLO(
        "svc",
        "backtest",
        objective,
        total=None,
        window=TimeWindow(30, rolling=False, start="1970-01-05T00:00:00+00:00"),
    )  # type: ignore[arg-type]
    win0 = slo.window.start_ms(0) + 14 * 86_400_000 * 3  # a window start (14-day multiple: 30 d periods)
    win0 = slo.window.start_ms(win0 + 1)
    ts = win0 + (np.arange(-before, hours) + 1) * FORECAST_STEP_MS
    tp = fp = fn = tn = 0
    errs, covered, forecasts = [], 0, 0
    for _ in range(n_streams):
        good, total = _stream(rng, before + hours, slo.budget)
        bad = np.cumsum((total - good)[before:])
        spent = bad >= slo.budget * total[before:].sum()  # the window's objective is missed
        crossed = before + np.flatnonzero(spent)
        for at in range(before + 72, before + hours - 24, 24):
            now = int(ts[at - 1])
            if spent[at - 1 - before]:
                continue  # already spent: nothing to forecast
            f = forecast_counts(slo, ts[:at], good[:at], total[:at], now, 0.0)
            if f is None:
                continue
            later = crossed[crossed >= at]
            truth = (int(ts[later[0]]) - now) / 1000.0 if len(later) else math.inf
            forecasts += 1
            warned, real = f.warns, math.isfinite(truth)
            tp += warned and real
            fp += warned and not real
            fn += (not warned) and real
            tn += (not warned) and not real
            if real:
                errs.append(abs(f.eta_s - truth) / truth if math.isfinite(f.eta_s) else 1.0)
                covered += bool(f.low_s <= truth <= f.high_s)
    return {
        "streams": n_streams,
        "forecasts": forecasts,
        "exhausted_cases": len(errs),
        "warn_precision_pct": 100 * tp / max(1, tp + fp),
        "warn_recall_pct": 100 * tp / max(1, tp + fn),
        "median_abs_pct_error": 100 * float(np.median(errs)) if errs else float("nan"),
        "p90_abs_pct_error": 100 * float(np.quantile(errs, 0.9)) if errs else float("nan"),
        "band_coverage_pct": 100 * covered / max(1, len(errs)),
    }


if __name__ == "__main__":  # pragma: no cover - prints the figures of docs/benchmarks.md
    print(json.dumps(backtest(), indent=2))
